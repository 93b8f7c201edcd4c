"""Where MLflow records go: ``MLFLOW_TRACKING_URI`` when set, else a SQLite store in the project's ``mlruns/``.

MLflow 3.x keeps its file store (``./mlruns`` as a plain folder) in maintenance mode and refuses it by default,
so the local default is ``sqlite:///<project>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
Any other tracking URI (a server, PostgreSQL) works through the environment variable or ``uri=``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MLRUNS = ROOT / "mlruns"


def tracking_uri(uri: str | None = None) -> str:
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    MLRUNS.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{MLRUNS / 'mlflow.db'}"


def use_experiment(name: str, uri: str | None = None) -> Any:
    """Point MLflow at :func:`tracking_uri` and select (creating if needed) experiment ``name``; returns it."""
    import mlflow

    resolved = tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = (MLRUNS / "artifacts").as_uri() if resolved.startswith("sqlite:") else None
        mlflow.create_experiment(name, artifact_location=location)
    return mlflow.set_experiment(name)
