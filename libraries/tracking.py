"""Run history in MLflow: each pipeline run (scripts 1-5 with one set of parameters on one split) is one MLflow
run, which scripts 2, 4 and 5 each reopen to add their metrics and artifacts; ``mlflow ui`` then compares
whole runs side by side.

A run is found again by its ``pipeline_key`` tag: a digest of the parameters that change results and of the
split. Tracking never breaks the pipeline: the first failure warns once and turns tracking off.
The default store needs no server: SQLite at DATA_DIR/mlruns/mlflow.db, artifacts in DATA_DIR/mlruns/artifacts/.
"""
from __future__ import annotations

import logging
import math
import os
import re
import warnings
from pathlib import Path

from .artifacts import file_digest, save_json, text_digest
from .layout import mlflow_store
from .provenance import result_parameters


def default_uri(data_dir: str | Path) -> str:
    return f"sqlite:///{mlflow_store(data_dir)[0]}"


def resolve_uri(track_uri: str | None, data_dir: str | Path) -> str:
    return track_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(data_dir)


def pipeline_key(params: dict, split_path: Path) -> str:
    relevant = result_parameters(params)
    split_digest = file_digest(split_path) if Path(split_path).is_file() else None
    return text_digest([relevant, split_digest])


def metric_name(text: str) -> str:
    """MLflow accepts letters, digits and ``_ - . / :`` and spaces in names; anything else becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", text)


def flatten_numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested dict/list, named by its path: {'auc': {'cat': 0.9}} -> {'auc_cat': 0.9}."""
    out = {}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        items = ()
    for key, value in items:
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out[metric_name(name)] = float(value)
        else:
            out.update(flatten_numbers(value, name))
    return out


class Tracker:
    """One pipeline run in MLflow, reopened by each script. Use as a context manager; every method is safe."""

    def __init__(self, params: dict, data_dir: str | Path, experiment: str, split_path: Path, step: str,
                 enabled: bool = True, uri: str | None = None, run_file: Path | None = None):
        self.params, self.data_dir, self.experiment, self.step = params, Path(data_dir), experiment, step
        self.enabled = enabled
        self.uri = resolve_uri(uri, data_dir)
        self.key = pipeline_key(params, split_path)
        self.run_file = run_file
        self.run_id = None
        self._mlflow = None

    @classmethod
    def for_script(cls, P, paths, step: str, enabled: bool = True) -> "Tracker":
        """The tracker of a script's run; ``enabled=False`` (a torchrun process other than the first) logs nothing."""
        return cls(vars(P), P.DATA_DIR, P.datasetName, paths.split, step, P.track_boMlflow and enabled, P.track_uri,
                   paths.mlflow_run)

    def _fail(self, err: Exception) -> None:
        if self.enabled:
            warnings.warn(f"MLflow tracking to {self.uri} failed ({type(err).__name__}: {err}); "
                          f"the pipeline goes on without it", stacklevel=3)
        self.enabled = False

    def _call(self, fn, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # any tracking problem must leave the pipeline running
            self._fail(err)
            return None

    def __enter__(self) -> "Tracker":
        self._call(self._start)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._mlflow is not None and self.run_id:
            status = "FINISHED" if exc_type is None else "FAILED"
            self._call(self._mlflow.end_run, status=status)

    def _start(self) -> None:
        import mlflow

        for name in ("mlflow", "alembic"):  # mlflow sets its own level on import; its INFO lines are noise here
            logging.getLogger(name).setLevel(logging.WARNING)

        self._mlflow = mlflow
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(self.experiment)
        if experiment is None:
            artifacts = None
            if self.uri == default_uri(self.data_dir):
                artifacts = mlflow_store(self.data_dir)[1].as_uri()
            experiment_id = mlflow.create_experiment(self.experiment, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        found = mlflow.search_runs([experiment_id], filter_string=f"tags.pipeline_key = '{self.key}'",
                                   output_format="list", max_results=1)
        if found:
            run = mlflow.start_run(run_id=found[0].info.run_id)
        else:
            name = f"{self.params.get('classifier')} {self.params.get('rf_pretrainedModel')}"
            run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags={"pipeline_key": self.key})
            mlflow.log_params({k: str(v)[:6000] for k, v in sorted(self.params.items())})
        self.run_id = run.info.run_id
        mlflow.set_tag(f"step.{self.step}", "done")
        if self.run_file:
            save_json(self.run_file, {"run_id": self.run_id, "experiment_id": experiment_id, "tracking_uri": self.uri})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            clean = {metric_name(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
            self._call(self._mlflow.log_metrics, clean, step=step)

    def log_artifacts(self, *paths: Path) -> None:
        if self._mlflow is not None:
            for path in paths:
                if path and Path(path).is_file():
                    self._call(self._mlflow.log_artifact, str(path))
