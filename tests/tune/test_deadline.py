"""A deadline holds inside a fit: the work runs in a forked child that is ended at the deadline."""
import time

import numpy as np
import pytest

from cgtrain.tune.deadline import ChildFailed, DeadlineExceeded, call_with_deadline, can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs fork")


def test_result_comes_back_from_the_child():
    out = call_with_deadline(lambda: np.arange(5) * 2, 30)
    assert out.tolist() == [0, 2, 4, 6, 8]


def test_work_past_the_deadline_is_ended_at_the_deadline():
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_with_deadline(lambda: time.sleep(30), 0.5)
    assert time.monotonic() - start < 5


def test_an_error_in_the_child_is_raised_with_its_name():
    with pytest.raises(ChildFailed, match="ValueError: bad C"):
        call_with_deadline(lambda: (_ for _ in ()).throw(ValueError("bad C")), 30)


def test_no_deadline_runs_in_process():
    seen = []
    call_with_deadline(lambda: seen.append(1), None)
    assert seen == [1]


class FakeTrial:
    number = 0

    def __init__(self):
        self.user_attrs = {}

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_a_fold_fit_past_the_trial_limit_is_stopped_inside_the_fit():
    from cgtrain.tune.hooks import TrialHooks, TrialTimeout

    hooks, trial = TrialHooks(store_oof=False, limit_s=lambda t: 1.0), FakeTrial()
    hooks.start(trial)
    model, proba, fit_s = hooks.run_fold(trial, 0, lambda: ("model", np.ones((2, 2)), 0.25), interruptible=False)
    assert model is None and proba.shape == (2, 2) and fit_s == 0.25  # the forked child sends back its fit's seconds
    start = time.monotonic()
    with pytest.raises(TrialTimeout):
        hooks.run_fold(trial, 1, lambda: (time.sleep(30), None, 0.0), interruptible=False)
    assert time.monotonic() - start < 5 and trial.user_attrs["fit_stopped"] is True
    with pytest.raises(TrialTimeout):  # features that would take longer than what is left are not built
        hooks.check_time(trial, 2, need_s=60)


def test_a_training_loop_past_the_trial_limit_is_stopped_at_its_next_step():
    """Families that stop themselves (the torch loop checks interrupts.check_time at every step) run in-process
    under the trial's limit and end as a timed-out trial, however long one epoch would have been."""
    from cgtrain import interrupts
    from cgtrain.tune.hooks import TrialHooks, TrialTimeout

    def endless_epoch():
        while True:
            interrupts.check_time()
            time.sleep(0.01)

    hooks, trial = TrialHooks(store_oof=False, limit_s=lambda t: 0.5), FakeTrial()
    hooks.start(trial)
    start = time.monotonic()
    with pytest.raises(TrialTimeout):
        hooks.run_fold(trial, 0, endless_epoch, interruptible=True)
    assert time.monotonic() - start < 3 and trial.user_attrs["fit_stopped"] is True
    interrupts.check_time()  # the limit ended with the fold
