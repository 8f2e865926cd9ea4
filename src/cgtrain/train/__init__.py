"""The PyTorch training engine: one loop, checkpoints, stability fallbacks, losses, data."""
from cgtrain.train.checkpoint import DirStore, MemoryStore
from cgtrain.train.data import SequenceData, SparseData, Vocab
from cgtrain.train.loop import FitResult, Hooks, TrainConfig, train
from cgtrain.train.stability import FALLBACKS, SimulatedOOM, TrainingDiverged

__all__ = ["DirStore", "FALLBACKS", "FitResult", "Hooks", "MemoryStore", "SequenceData", "SimulatedOOM",
           "SparseData", "TrainConfig", "TrainingDiverged", "Vocab", "train"]
