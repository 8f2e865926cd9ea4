"""`cgtrain models`: registered models, their versions and aliases, and the promotion gate.

Imports MLflow only inside the commands, so mounting this app costs `cgtrain` nothing.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(no_args_is_help=True, help="Registered models: list, show, promote (champion/challenger).")

out = Console()
err = Console(stderr=True)
EXIT_FAILED = 1

TRACKING_URI = typer.Option(None, "--tracking-uri", help="MLflow tracking/registry store (default: "
                                                        "$MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")


@contextmanager
def registry_errors() -> Iterator[None]:
    """The CLI's one handler (cli_errors.user_errors): registry problems exit 2, a gate refusal exits 1."""
    from mlflow.exceptions import MlflowException

    from cgtrain.cli.errors import user_errors
    from cgtrain.errors import PromotionRefused

    with user_errors(refusals=(PromotionRefused,), also=(MlflowException,)):
        yield


JSON_OPTION = typer.Option(False, "--json", help="print one JSON value on stdout instead of the table")


@models_app.command("list")
def list_models(tracking_uri: Optional[str] = TRACKING_URI, as_json: bool = JSON_OPTION) -> None:
    """Every registered model with its champion, challenger and latest version."""
    from cgtrain.registry import model_registry as reg
    from cgtrain.track.store import resolve_tracking_uri, tracking_client

    with registry_errors():
        client = tracking_client(tracking_uri, create=False)
        rows = []
        for name in reg.registered_names(client):
            versions = reg.versions_of(client, name)
            champion = next((v for v in versions if reg.CHAMPION in v.aliases), None)
            challenger = next((v for v in versions if reg.CHALLENGER in v.aliases), None)
            rows.append({"name": name, "versions": len(versions), "champion": _version(champion),
                         "challenger": _version(challenger), "latest": _version(versions[-1] if versions else None),
                         "champion_metric": _metric(champion)})
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("name", "versions", "champion", "challenger", "latest", "champion metric",
                  title=f"registered models ({resolve_tracking_uri(tracking_uri)})")
    for r in rows:
        table.add_row(r["name"], str(r["versions"]), r["champion"], r["challenger"], r["latest"], r["champion_metric"])
    out.print(table)


@models_app.command("show")
def show(name: str = typer.Argument(..., help="registered model name (the request's name)"),
         tracking_uri: Optional[str] = TRACKING_URI, as_json: bool = JSON_OPTION) -> None:
    """The versions of one model: aliases, family, test metric, ONNX, promotion records."""
    from cgtrain.registry import model_registry as reg
    from cgtrain.track.store import tracking_client

    with registry_errors():
        client = tracking_client(tracking_uri, create=False)
        if name not in reg.registered_names(client):
            raise reg.RegistryError(reg.unknown_message(client, name, "versions"))
        versions = reg.versions_of(client, name)
    rows = [{"version": str(v.version), "aliases": list(v.aliases), "family": v.tags.get(reg.TAG + "family", ""),
             "test_metric": _metric(v), "onnx": v.tags.get(reg.TAG + "onnx", "").split(":")[0],
             "created": datetime.fromtimestamp(v.creation_timestamp / 1000).strftime("%Y-%m-%d"),
             "promotion": _promotion(v.tags)} for v in versions]
    if as_json:
        sys.stdout.write(json.dumps({"name": name, "versions": rows}) + "\n")
        return
    table = Table("version", "aliases", "family", "test metric", "onnx", "created", "promotion", title=name)
    for r in rows:
        table.add_row(r["version"], " ".join(f"@{a}" for a in r["aliases"]), r["family"], r["test_metric"], r["onnx"],
                      r["created"], r["promotion"])
    out.print(table)


@models_app.command("promote")
def promote(name: str = typer.Argument(..., help="registered model name"),
            version: int = typer.Argument(..., help="the version to make champion"),
            force: bool = typer.Option(False, "--force", help="promote even when the gate refuses (needs --reason)"),
            reason: Optional[str] = typer.Option(None, "--reason", help="why the gate is overridden (kept as a tag)"),
            tracking_uri: Optional[str] = TRACKING_URI) -> None:
    """Make VERSION the champion if it beats the current one on the same held-out rows.

    Gate: its metric is higher AND (McNemar p < 0.05 OR the paired-bootstrap 95% CI of the
    difference lies above 0). Otherwise refused (exit 1) with the statistics."""
    from cgtrain.registry.promotion import promote as run_gate
    from cgtrain.track.store import tracking_client

    with registry_errors():
        result = run_gate(tracking_client(tracking_uri, create=False), name, version, force=force, reason=reason)
    was = f" (was {result.previous_champion})" if result.previous_champion else ""
    how = (f"forced past the gate (reason: {reason}); the gate said: " if result.forced and not result.decision.promote
           else "promoted: ")
    out.print(f"{name}/{result.version} is now @champion{was}, {how}{result.decision.reason}", highlight=False)


def _version(v) -> str:
    return str(v.version) if v is not None else "-"


def _metric(v) -> str:
    from cgtrain.registry.model_registry import TAG

    if v is None:
        return "-"
    metric = v.tags.get(TAG + "metric", "")
    value = v.tags.get(f"{TAG}test_{metric}", "")
    try:
        return f"{metric} {float(value):.4f}"
    except ValueError:
        return metric or "-"


def _promotion(tags: dict) -> str:
    from cgtrain.registry.model_registry import TAG

    parts = []
    if tags.get(TAG + "gate.decision"):
        p = tags.get(TAG + "gate.mcnemar_p")
        parts.append(f"{tags[TAG + 'gate.decision']}" + (f" p={float(p):.2g}" if p else ""))
    if tags.get(TAG + "promotion.forced") == "true":
        parts.append("forced: " + json.dumps(tags.get(TAG + "promotion.reason", ""))[:60])
    if tags.get(TAG + "promotion.superseded_by"):
        parts.append(f"superseded by {tags[TAG + 'promotion.superseded_by']}")
    return "; ".join(parts)
