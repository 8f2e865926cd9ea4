# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA := data/pybugs.jsonl
DEMO_RUN := runs/demo

.PHONY: demo test setup lock clean browser ui

setup: $(STAMP)

# Pinned, reproducible install: every package from requirements.lock (torch is the CPU wheel on disk).
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(DEMO_DATA): $(STAMP)
	$(BIN)/cgtrain data synth-bugs --out $(DEMO_DATA) --seed 0 --max-functions 5000

demo: $(STAMP) $(DEMO_DATA)
	rm -rf $(DEMO_RUN)
	$(BIN)/cgtrain train examples/python-bugs.yaml --run-dir $(DEMO_RUN)

# The report test opens report.html in headless Chromium (Debian's package); install it when missing.
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) || sudo apt-get install -y -qq chromium >/dev/null 2>&1) || echo "chromium not installed: the report browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The MLflow UI over the embedded store that `cgtrain train` logs to (runs, trials, registered models).
ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port $${PORT:-5000}

# Refresh the lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^cgtrain' > requirements.lock

clean:
	rm -rf $(VENV) runs data/pybugs.jsonl
