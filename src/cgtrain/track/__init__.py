"""Experiment tracking: the MLflow store (store.py), logging a run (mlflow_tracking.py), the environment snapshot
(environment.py) and registered versions as MLflow pyfunc models (pyfunc.py)."""
