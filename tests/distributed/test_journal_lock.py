"""The shared study's journal: a worker killed while it holds the write lock stalls nobody."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna

from cgtrain.tune import parallel

HOLD = textwrap.dedent("""
    import sys, time
    from cgtrain.tune import parallel
    storage = parallel.open_storage("journal:" + sys.argv[1])
    storage._backend._lock.acquire()  # as if killed in the middle of an append
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_worker_killed_holding_the_journal_lock_does_not_stall_the_others(tmp_path):
    journal = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=parallel.open_storage(f"journal:{journal}"))
    trial = study.ask()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(journal)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    study.tell(trial, 0.5)  # Optuna's symlink lock made this wait 30 s, then race the other waiters to break it
    again = optuna.load_study(study_name="s", storage=parallel.open_storage(f"journal:{journal}"))
    assert time.monotonic() - start < 5
    assert again.trials[0].state == optuna.trial.TrialState.COMPLETE and again.trials[0].value == 0.5


def test_writers_of_one_process_exclude_each_other_and_all_writes_land(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    storage = parallel.open_storage(f"journal:{tmp_path / 'study.journal'}")
    study = optuna.create_study(study_name="s", storage=storage)
    trials = [study.ask() for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: [t.set_user_attr(f"k{i}", i) for i in range(20)], trials))
    again = optuna.load_study(study_name="s", storage=parallel.open_storage(f"journal:{tmp_path / 'study.journal'}"))
    assert all(len(t.user_attrs) == 20 for t in again.trials)
