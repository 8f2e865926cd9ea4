"""Helpers shared by the test suites (importable as `helpers.*`: pytest puts tests/ on sys.path, see pyproject).

Fixtures live in the conftest.py files; plain functions and constants live here, so no test imports a conftest.
"""
