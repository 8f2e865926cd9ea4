"""How long the light commands take to start, against `cgtrain --help` (issue 15: validate within 3x).

    python bench/cli_startup.py [--repeat 5]

Each command runs in a fresh process, as a user types it; the median of --repeat runs is printed with
its ratio to `cgtrain --help`, and which heavy libraries the command imported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "lightgbm", "sklearn", "pandas", "mlflow")
PROBE = ("import sys, runpy; sys.argv = ['cgtrain'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('cgtrain', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n")


def timed(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, str]:
    walls, heavy = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - start)
        heavy = next((line[6:] for line in proc.stderr.splitlines() if line.startswith("HEAVY ")), "?")
    return statistics.median(walls), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    a = parser.parse_args()
    store = tempfile.mkdtemp(prefix="cgtrain-bench-mlflow-")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    commands = [["--help"], ["validate", "examples/python-bugs.yaml"], ["families"], ["schema"], ["models", "list"]]
    base = None
    print(f"{'command':<40} {'median s':>9} {'x --help':>9}  heavy imports")
    for args in commands:
        wall, heavy = timed(args, env, a.repeat)
        base = base or wall
        print(f"{'cgtrain ' + ' '.join(args):<40} {wall:9.2f} {wall / base:9.2f}  {heavy}")


if __name__ == "__main__":
    main()
