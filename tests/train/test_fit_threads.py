"""A forked fit after a multi-threaded one in the parent (the budgeted final fit on all rows) must not hang."""
import subprocess
import sys
import textwrap

from cgtrain.core import threads

SCENARIO = textwrap.dedent("""
    import numpy as np
    from lightgbm import LGBMClassifier
    from cgtrain.core import threads
    from cgtrain.tune.deadline import DeadlineExceeded, call_with_deadline

    X = np.random.default_rng(0).random((4000, 20)); y = (X[:, 0] > 0.5).astype(int)
    def fit(n_jobs):
        return LGBMClassifier(n_estimators=20, verbose=-1, **threads.fit_threads({"n_jobs": n_jobs})).fit(X, y)
    fit(PARENT)                      # the refit on the training rows, in the parent process
    narrow = threads.fork_needs_one_thread()
    def child():                     # the final fit on all rows, forked to keep the deadline
        with threads.forked_fit(WRAP and narrow):
            return fit(2).get_params()["n_jobs"]
    try:
        print("ok", narrow, call_with_deadline(child, 15))
    except DeadlineExceeded:
        print("hung", narrow)
""")


def _run(parent_threads: int, wrap: bool = True) -> str:
    code = SCENARIO.replace("PARENT", str(parent_threads)).replace("WRAP", str(wrap))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or out.stderr[-500:]


def test_a_forked_fit_after_a_multithreaded_parent_runs_on_one_thread_instead_of_hanging():
    # GNU OpenMP (LightGBM's) never returns in a child forked after the parent ran a parallel region on several
    # threads: the final fit on all rows waited for the deadline, then was thrown away
    assert _run(2, wrap=False) == "hung True"  # the hazard itself, as LightGBM ships
    assert _run(2) == "ok True 1"


def test_a_forked_fit_after_a_one_thread_parent_keeps_its_threads():
    assert _run(1) == "ok False 2"


def test_outside_a_forked_fit_params_are_kept_as_given():
    assert threads.fit_threads({"n_jobs": 1, "a": 2}) == {"n_jobs": 1, "a": 2}
    assert threads.fit_threads({"C": 1.0}) == {"C": 1.0}
    assert threads.threads_of(None) == threads.threads_of(-1) == threads.usable_cores()
