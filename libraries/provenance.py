"""What each artifact was made from, and the check that refuses a stale one.

Every artifact of the pipeline records its *provenance*: the step that made it, the parameters of that step
that change results, and the identity (a content digest) of each input artifact. A consumer checks the chain
before use; a mismatch stops with one sentence that names the file, what changed and the script to rerun, so a
model trained on yesterday's split or labels never answers today's question.

The pipeline's steps and their inputs, in order::

    split (1) -> model (2) -> features (3) -> svm (4) -> evaluation (5)
                 (the split only when the DNN is refined)   (dnn: features + model)
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from .artifacts import file_digest, load_json, save_json, text_digest
from .errors import MissingArtifact, StaleArtifact
from .layout import SCRIPTS, DatasetPaths

# the parameters that do not change what a run computes, only how fast, where, or whether it is logged
NOT_RESULT_PARAMETERS = ("rf_device", "rf_numWorkers", "run_engine", "run_mbSize", "run_shardAbove", "track_boMlflow", "track_uri",
                         "dl_numWorkers", "dl_timeoutSec", "dl_maxRetries", "svm_boFindSuspects")

SPLIT_PARAMETERS = ("ratioTrainTest", "imagesSplitBy", "randomSeed", "dup_maxDistance", "dup_boKeepTogether")
FIXED_MODEL_PARAMETERS = ("rf_pretrainedModel", "rf_pretrainedWeights", "rf_inputResolution")
SVM_PARAMETERS = ("svm_boL2Normalize", "svm_CVals", "svm_cvFolds", "svm_boExcludeSuspects", "randomSeed")


def result_parameters(params: dict) -> dict:
    """Every parameter that can change a result (all but ``NOT_RESULT_PARAMETERS``)."""
    return {k: v for k, v in params.items() if k not in NOT_RESULT_PARAMETERS}


def is_refined(classifier: str) -> bool:
    """Whether ``classifier`` uses a refined DNN ('dnn', 'svmDnnRefined') rather than the fixed pretrained one."""
    return classifier != "svm"


def step_parameters(params: dict, step: str) -> dict:
    """The parameters that the artifacts of ``step`` depend on."""
    if step == "split":
        return {k: params[k] for k in SPLIT_PARAMETERS}
    if step == "model":
        chosen = {"refined": is_refined(params["classifier"]), **{k: params[k] for k in FIXED_MODEL_PARAMETERS}}
        if chosen["refined"]:
            chosen.update({k: v for k, v in result_parameters(params).items() if k.startswith("rf_")})
            chosen["randomSeed"] = params["randomSeed"]
        return chosen
    if step == "features":
        return {"run_tta": params.get("run_tta", "none")}
    if step == "svm":
        return {k: params[k] for k in SVM_PARAMETERS}
    if step == "evaluation":
        return {"classifier": params["classifier"]}
    raise ValueError(f"unknown step {step!r}")


def step_inputs(step: str, classifier: str) -> tuple[str, ...]:
    """The steps whose artifacts ``step`` reads, for ``classifier``."""
    return {"split": (), "model": ("split",) if is_refined(classifier) else (), "features": ("split", "model"),
            "svm": ("features",), "evaluation": ("features", "model" if classifier == "dnn" else "svm")}[step]


def artifact(paths: DatasetPaths, step: str) -> Path:
    """The file that carries a step's provenance (and identity)."""
    return {"split": paths.split, "model": paths.model_meta, "features": paths.features, "svm": paths.svm_meta,
            "evaluation": paths.metrics}[step]


def identity(path: Path) -> str:
    """The content digest of an artifact: the one an .npz records of itself, else the file's."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "content_digest" in data.files:
                return str(data["content_digest"])
    return file_digest(path)


def record(step: str, params: dict, paths: DatasetPaths) -> dict:
    """The provenance of a ``step`` artifact made now, from ``params`` and the current input artifacts."""
    inputs = step_inputs(step, params["classifier"])
    return {"step": step, "parameters": step_parameters(params, step),
            "inputs": {artifact(paths, s).name: identity(artifact(paths, s)) for s in inputs}}


def read(path: Path) -> dict | None:
    """The provenance an artifact carries (JSON key or .npz member), or None."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["provenance"])) if "provenance" in data.files else None
    found = load_json(path)
    return found.get("provenance") if isinstance(found, dict) else None


def check(paths: DatasetPaths, step: str, params: dict | None, classifier: str | None = None) -> dict:
    """Refuse ``step``'s artifact unless it exists, was made with ``params`` (skipped when None) and from the
    input artifacts on disk now. Returns its provenance."""
    path, script = artifact(paths, step), SCRIPTS[step]
    if not path.is_file():
        raise MissingArtifact(f"{path} does not exist: run {script} first")
    found = read(path)
    if not found or found.get("step") != step:
        raise StaleArtifact(f"{path} does not record what it was made from (an older version of this project "
                            f"wrote it): rerun {script}")
    if params is not None:
        wanted = step_parameters(params, step)
        recorded = found["parameters"]
        if recorded.get("refined", False) != wanted.get("refined", False) and step == "model":
            if wanted["refined"]:
                raise StaleArtifact(f"classifier={params['classifier']!r} needs a refined DNN, but {path.name} holds the "
                                    f"fixed pretrained one: refine first with {script} --set classifier={params['classifier']}")
            raise StaleArtifact(f"{path.name} holds a refined DNN, but classifier='svm' uses the fixed pretrained one: "
                                f"to use the refined one, --set classifier='dnn' (or 'svmDnnRefined') with the rf_ "
                                f"settings it was refined with; to replace it with the fixed one (the refined one is "
                                f"then lost), rerun {script}")
        for name, value in wanted.items():
            if name not in recorded:
                raise StaleArtifact(f"{path.name} was made without {name}, which is {value!r} now: rerun {script}")
            if recorded[name] != value:
                raise StaleArtifact(f"{path.name} was made with {name}={recorded[name]!r}, but {name} is "
                                    f"{value!r} now: rerun {script}, or --set {shlex.quote(f'{name}={recorded[name]!r}')} to use it "
                                    f"as it is")
    classifier = classifier or (params or {}).get("classifier") or found["parameters"].get("classifier", "svm")
    for input_step in step_inputs(step, classifier):
        input_path = artifact(paths, input_step)
        if not input_path.is_file():
            raise MissingArtifact(f"{input_path} does not exist: run {SCRIPTS[input_step]} first")
        if found["inputs"].get(input_path.name) != identity(input_path):
            raise StaleArtifact(f"{path.name} is out of date: {input_path.name} changed after it was made "
                                f"({SCRIPTS[input_step]} ran again): rerun {script}")
    return found


def check_chain(paths: DatasetPaths, params: dict | None, upto: str, classifier: str | None = None) -> None:
    """Check every artifact that ``upto``'s step reads, and theirs, back to the split: the first stale one
    stops the run, naming the script to rerun from. ``params=None`` checks the inputs only (for readers that have
    no parameters, such as the report), with ``classifier`` saying which chain."""
    classifier = classifier or params["classifier"]
    for step in ("split", "model", "features", "svm", "evaluation"):
        if step == upto:
            return
        if step == "svm" and classifier == "dnn":
            continue
        check(paths, step, params, classifier)


def check_evaluation(paths: DatasetPaths) -> dict:
    """Check that the last evaluation (``metrics.json``) and everything it was made from are current."""
    found = check(paths, "evaluation", params=None)
    check_chain(paths, None, upto="evaluation", classifier=found["parameters"]["classifier"])
    return found


def step_key(params: dict, step: str, paths: DatasetPaths) -> str:
    """A digest of everything a step's result depends on (its parameters and its inputs)."""
    made = record(step, params, paths)
    return text_digest([made["parameters"], made["inputs"]])


def record_time(paths: DatasetPaths, step: str, seconds: float) -> None:
    """Note in ``step_times.json`` how long ``step``'s script took to make its artifact, and which version of the
    artifact that was (the report's run header shows it)."""
    times = load_json(paths.step_times) if paths.step_times.is_file() else {}
    times[step] = {"seconds": round(seconds, 1), "artifact": identity(artifact(paths, step))}
    save_json(paths.step_times, times)


def step_times(paths: DatasetPaths) -> dict[str, float]:
    """The seconds each step's script took to make the artifact on disk now, in pipeline order; a time noted for
    another version of an artifact (a later rerun, an earlier run) is left out, never shown as this one's."""
    times = load_json(paths.step_times) if paths.step_times.is_file() else {}
    return {step: times[step]["seconds"] for step in ("split", "model", "features", "svm")
            if step in times and artifact(paths, step).is_file()
            and times[step]["artifact"] == identity(artifact(paths, step))}


def code_version() -> str:
    """The git commit of this project's code (with '-dirty' for uncommitted changes), or 'unknown' outside a
    git checkout: which code made a result."""
    import subprocess

    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent.parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else "unknown"
