"""Pre-trained Hugging Face encoders over raw code, from local directories only.

`hf_finetune` fine-tunes the encoder with cgtrain's training loop; `hf_embed`
feeds its frozen, cached embeddings to a classical head.
"""
from cgtrain.models.hf import embed, finetune  # noqa: F401  (register the families)
from cgtrain.models.hf.embed import HFEmbedClassifier  # noqa: F401
from cgtrain.models.hf.encoder import HFModelError, default_model_path  # noqa: F401
from cgtrain.models.hf.finetune import HFClassifier  # noqa: F401
