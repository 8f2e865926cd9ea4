"""Each family's declared capabilities match what its estimator does (the flows trust the declaration)."""
import pytest

from cgtrain.models import FAMILIES

SUPERVISED = [n for n in FAMILIES.names() if FAMILIES.get(n).tasks & {"binary", "multiclass", "regression"}]


@pytest.mark.parametrize("name", SUPERVISED)
def test_epoch_validation_is_declared_exactly_where_the_estimator_validates_per_epoch(name):
    family = FAMILIES.get(name)
    task = "regression" if family.tasks == {"regression"} else None
    estimator = family.make({}, 0, task=task)
    assert ("val_metric" in estimator.get_params()) == family.epoch_validation


@pytest.mark.parametrize("name", SUPERVISED)
def test_saves_hf_dir_is_declared_exactly_where_the_estimator_writes_one(name):
    family = FAMILIES.get(name)
    task = "regression" if family.tasks == {"regression"} else None
    assert hasattr(family.make({}, 0, task=task), "save_pretrained") == family.saves_hf_dir


@pytest.mark.parametrize("name", SUPERVISED)
def test_every_supervised_family_declares_its_automl_cost_prior(name):
    """AutoML plans its first trials from this; an undeclared family would be guessed at."""
    cost = FAMILIES.get(name).prior_cost_s
    assert cost is not None and cost > 0


@pytest.mark.parametrize("name", FAMILIES.names())
def test_declared_settable_params_are_exactly_the_estimators_own(name):
    """The catalogue lists a family's settable params without importing it; they must match the estimator."""
    import inspect

    family = FAMILIES.get(name)
    if not family.extra_params or family.name in ("random_forest", "lightgbm", "bug_spotter"):
        return  # these settable params are read by the builder (select_k, n_jobs, max_bin, ...), not __init__
    estimator = family.make({}, 0)
    own = set(inspect.signature(type(estimator).__init__).parameters) - {"self", "net", "random_state", "class_weight"}
    assert family.extra_params == own


def test_families_import_only_the_optional_modules_they_declare():
    """Built in order of what they require (none, then torch, then transformers...), in one fresh process:
    after each family, every optional module loaded so far must be declared by a family built so far."""
    import subprocess
    import sys

    optional = ("torch", "transformers", "tokenizers", "mlflow", "shap", "fairlearn", "matplotlib", "captum")
    code = f"""
import sys
from cgtrain.models import FAMILIES
declared = set()
for name in sorted(FAMILIES.names(), key=lambda n: (len(FAMILIES.get(n).requires), n)):
    family = FAMILIES.get(name)
    declared |= set(family.requires)
    task = "regression" if family.tasks == {{"regression"}} else sorted(family.tasks)[0]
    family.make({{}}, 0, task=task)
    loaded = {{m for m in {optional!r} if m in sys.modules}}
    assert loaded <= declared, (name, sorted(loaded - declared))
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_every_lazy_builder_names_a_function_that_exists():
    """A renamed builder would otherwise fail only when someone first trains that family."""
    import importlib

    from cgtrain.models.base import Lazy

    for name in FAMILIES.names():
        family = FAMILIES.get(name)
        for ref in (family.build, *family.variants.values(), family.check_params):
            if isinstance(ref, Lazy):
                module, _, attr = ref.target.partition(":")
                assert callable(getattr(importlib.import_module(module), attr, None)), f"{name}: {ref.target}"
