"""Model families, registered by name; each declares its search space as data."""
from cgtrain.models.base import FAMILIES, Family  # noqa: F401
from cgtrain.models import classical  # noqa: F401  (registers the classical families)
from cgtrain.models import linear  # noqa: F401,E402  (sgd, complement_nb)
from cgtrain.models import neural  # noqa: F401,E402  (registers the torch families)
from cgtrain.models import unsupervised  # noqa: F401,E402  (anomaly + clustering families)
from cgtrain.models import hf  # noqa: F401,E402  (registers hf_finetune, hf_embed)
from cgtrain.models import locator  # noqa: F401,E402  (registers bug_locator)
from cgtrain.models import bug_spotter  # noqa: F401,E402  (registers bug_spotter)
