"""The `cgtrain` command: one Typer app; each command group lives in its own module here."""
from cgtrain.cli.main import app

__all__ = ["app"]
