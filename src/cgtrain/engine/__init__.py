"""The PyTorch training engine: one loop, checkpoints, stability fallbacks, losses, data."""
from cgtrain.engine.checkpoint import DirStore, MemoryStore
from cgtrain.engine.data import SequenceData, SparseData, Vocab
from cgtrain.engine.loop import FitResult, Hooks, TrainConfig, train
from cgtrain.engine.stability import FALLBACKS, SimulatedOOM, TrainingDiverged

__all__ = ["DirStore", "FALLBACKS", "FitResult", "Hooks", "MemoryStore", "SequenceData", "SimulatedOOM",
           "SparseData", "TrainConfig", "TrainingDiverged", "Vocab", "train"]
