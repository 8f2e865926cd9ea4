"""Model families, registered by name; each declares its search space as data.

The metadata lives in `cgtrain.models.catalog` and costs no heavy import; each family's builder
(and so torch, transformers or LightGBM) is imported when the family is first built.
"""
from cgtrain.models.base import FAMILIES, Family  # noqa: F401
from cgtrain.models import catalog  # noqa: F401,E402  (registers every family)
