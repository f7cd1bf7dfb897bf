"""Reading PARAMETERS.py and its ``--set name=value`` overrides, and checking them before work starts."""
from __future__ import annotations

import argparse
import ast
import difflib
import os
import time
import types
import typing
from pathlib import Path

from .errors import BadParameter, UserError
from .presets import AUGMENTATIONS, TTA_MODES

CHOICES = {
    "classifier": ("svm", "dnn", "svmDnnRefined"),
    "imagesSplitBy": ("filename", "subdir"),
    "rf_device": ("auto", "cuda", "cpu"),
    "rf_augmentation": AUGMENTATIONS,
    "rf_optimizer": ("sgd", "adamw"),
    "run_engine": ("auto", "onnxruntime", "torch", "ray"),
    "run_tta": TTA_MODES,
}


def parse_value(text: str):
    """A Python literal, or the bare text as a string when it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _matches(value, annotation) -> bool:
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        annotation = origin
    return isinstance(value, annotation)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def apply_overrides(defaults: dict, annotations: dict, overrides: list[str]) -> dict:
    """Return a copy of ``defaults`` with each ``name=value`` of ``overrides`` applied and type-checked."""
    params = dict(defaults)
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise BadParameter(f"--set {item!r}: expected name=value, e.g. --set datasetName=solar")
        if name not in defaults:
            close = [n for n in defaults if n.lower() == name.lower()] or difflib.get_close_matches(name, defaults, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise BadParameter(f"--set {item!r}: {name!r} is not a parameter of PARAMETERS.py.{hint}")
        value = parse_value(text.strip())
        annotation = annotations.get(name, type(defaults[name]))
        if not _matches(value, annotation):
            hint = ""
            if _matches([], annotation) and isinstance(value, (tuple, int, float)) and not isinstance(value, bool):
                as_list = list(value) if isinstance(value, tuple) else [value]
                hint = f"; write a list in brackets, quoted for the shell: --set '{name}={as_list!r}'"
            raise BadParameter(
                f"--set {item!r}: {name} must be of type {_type_name(annotation)}, got {type(value).__name__} {value!r}{hint}"
            )
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        params[name] = value
    return params


def validate(params: dict, backbone_names: typing.Iterable[str] = ()) -> None:
    """Check values that have the right type but cannot work."""
    for name, allowed in CHOICES.items():
        if name in params and params[name] not in allowed:
            raise BadParameter(f"{name} must be one of {', '.join(map(repr, allowed))}, got {params[name]!r}")
    backbone_names = list(backbone_names)
    if backbone_names and params.get("rf_pretrainedModel") not in backbone_names:
        raise BadParameter(
            f"rf_pretrainedModel must be one of {', '.join(map(repr, backbone_names))}, got {params.get('rf_pretrainedModel')!r}"
        )
    if "ratioTrainTest" in params and not 0 < params["ratioTrainTest"] < 1:
        raise BadParameter(f"ratioTrainTest must lie strictly between 0 and 1, got {params['ratioTrainTest']}")
    if "datasetName" in params:
        from .dataset import check_dataset_name

        check_dataset_name(params["datasetName"])
    for name in ("rf_mbSize", "rf_maxEpochs", "run_mbSize", "run_shardAbove", "dl_maxImageSize", "dl_numWorkers"):
        if name in params and params[name] < 1:
            raise BadParameter(f"{name} must be at least 1, got {params[name]}")
    if params.get("rf_inputResolution") is not None and params["rf_inputResolution"] < 32:
        raise BadParameter(f"rf_inputResolution must be at least 32 pixels (or None for the backbone's own size), "
                           f"got {params['rf_inputResolution']}")
    if params.get("rf_lrPerMb") is not None and (not params["rf_lrPerMb"] or not all(_matches(v, float) for v in params["rf_lrPerMb"])):
        raise BadParameter(f"rf_lrPerMb must be None (the warm-up + cosine schedule) or a non-empty list of numbers, "
                           f"got {params['rf_lrPerMb']!r}")
    if "rf_learningRate" in params and not params["rf_learningRate"] > 0:
        raise BadParameter(f"rf_learningRate must be positive, got {params['rf_learningRate']}")
    if "rf_labelSmoothing" in params and not 0 <= params["rf_labelSmoothing"] < 1:
        raise BadParameter(f"rf_labelSmoothing must lie in [0, 1), got {params['rf_labelSmoothing']}")
    if params.get("rf_trainLastBlocks") is not None and params["rf_trainLastBlocks"] < 0:
        raise BadParameter(f"rf_trainLastBlocks must be None (train all) or at least 0, got {params['rf_trainLastBlocks']}")
    if "svm_CVals" in params and (not params["svm_CVals"] or not all(_matches(v, float) and v > 0 for v in params["svm_CVals"])):
        raise BadParameter(f"svm_CVals must be a non-empty list of positive numbers, got {params['svm_CVals']!r}")
    if "rf_valFraction" in params and not 0 <= params["rf_valFraction"] < 1:
        raise BadParameter(f"rf_valFraction must lie in [0, 1), got {params['rf_valFraction']}")
    if "dup_maxDistance" in params and not 0 <= params["dup_maxDistance"] < 256:
        raise BadParameter(f"dup_maxDistance must lie in [0, 256) bits, got {params['dup_maxDistance']}")
    if "svm_cvFolds" in params and params["svm_cvFolds"] < 2:
        raise BadParameter(f"svm_cvFolds must be at least 2, got {params['svm_cvFolds']}")
    if params.get("rf_pretrainedWeights") and not Path(params["rf_pretrainedWeights"]).is_file():
        raise BadParameter(f"rf_pretrainedWeights: no such file {params['rf_pretrainedWeights']!r}")


def module_parameters(module: types.ModuleType) -> tuple[dict, dict]:
    """The parameters (public, non-module, non-callable names) of a PARAMETERS module and their annotations."""
    values = {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and not callable(value)
    }
    return values, dict(getattr(module, "__annotations__", {}))


def load(module: types.ModuleType, overrides: list[str] = (), backbone_names: typing.Iterable[str] = ()) -> types.SimpleNamespace:
    """The parameters of ``module`` with ``name=value`` overrides applied and checked (for notebooks and tests)."""
    defaults, annotations = module_parameters(module)
    params = apply_overrides(defaults, annotations, list(overrides))
    validate(params, backbone_names)
    return types.SimpleNamespace(**params)


def parse(module: types.ModuleType, argv: list[str] | None = None, description: str | None = None,
          backbone_names: typing.Iterable[str] = (), add_arguments=None) -> tuple[types.SimpleNamespace, argparse.Namespace]:
    """Parse a script's command line: every ``--set name=value`` applied to ``module``'s parameters.

    Returns the parameters as a namespace, and the other parsed arguments (from ``add_arguments(parser)``).
    Exits with one clear sentence on an unknown name or a wrong value.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of PARAMETERS.py with a Python literal; repeatable")
    parser.add_argument("--print-params", action="store_true",
                        help="print every parameter in effect (PARAMETERS.py with the --set overrides) and stop")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        params = load(module, args.set, backbone_names)
    except UserError as err:
        parser.exit(2, f"error: {err}\n" if first_process() else None)
    if args.print_params:
        print(describe(params, args.set), end="")
        parser.exit(0)
    return params, args


def describe(params: types.SimpleNamespace, overrides: list[str] = ()) -> str:
    """Every parameter in effect, one per line, those set on the command line marked."""
    changed = {item.partition("=")[0].strip() for item in overrides}
    width = max(len(name) for name in vars(params))
    return "".join(f"{name:<{width}}  {value!r}{'   (--set)' if name in changed else ''}\n"
                   for name, value in vars(params).items())


def elapsed(seconds: float) -> str:
    """'8.2 s', '3 min 05 s', '1 h 02 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


_started = time.perf_counter()  # reset by run(): when the script's work began


def seconds_so_far() -> float:
    """Seconds since the running script began (its imports aside)."""
    return time.perf_counter() - _started


def process_rank() -> int:
    """Which of torchrun's processes this is (``RANK``; 0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def first_process() -> bool:
    """False in the 2nd, 3rd, ... process that torchrun starts: they meet the same parameters and files as the
    first, so only the first says what is wrong (and prints), and torchrun's summary lists every exit code."""
    return process_rank() == 0


def run(main) -> None:
    """Run a script's ``main()`` and end with its elapsed time; a ``UserError`` ends it with one line on stderr and
    exit code 1, while any other exception is a bug and keeps its traceback."""
    import sys

    global _started
    _started = time.perf_counter()
    try:
        main()
        print(f"done in {elapsed(seconds_so_far())}")
    except UserError as err:
        if first_process():
            print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished artifacts are kept; run the script again to continue", file=sys.stderr)
        sys.exit(130)
