"""Every model family's metadata: name, tasks, input, search space, defaults, settable params,
cost prior, and the optional extra it needs. Builders are `Lazy("module:function")`, so knowing the
families (validate, schema, families, the AutoML plan) imports neither torch, transformers nor
LightGBM; a family whose extra is not installed is listed as unavailable with its pip command.
"""
from cgtrain.models.catalog import tables, neural, encoders  # noqa: F401  (register the families)
