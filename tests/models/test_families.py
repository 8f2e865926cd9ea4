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
