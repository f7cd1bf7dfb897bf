"""Exporting a torch module that takes (B, S, S, 3) uint8 images to ONNX, the one way every ONNX file here is made,
and opening one in onnxruntime, the one way every ONNX file here is run."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from .artifacts import atomic_path


def export_onnx(module, path: Path, input_size: int, output_names: tuple[str, ...] = ("output",), opset: int = 17) -> None:
    """Export a (B, S, S, 3) uint8 -> (B, ...) float module to ONNX with a dynamic batch axis, atomically."""
    import torch

    dummy = torch.zeros(2, input_size, input_size, 3, dtype=torch.uint8)
    axes = {"input": {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (dummy,), str(tmp), input_names=["input"], output_names=list(output_names),
                          dynamic_axes=axes, opset_version=opset, dynamo=False)


def open_session(path: Path, threads: int | None = None, cuda: bool = False, spinning: bool = True):
    """An onnxruntime session: ``threads`` intra-op threads (None: onnxruntime's own choice) and one inter-op thread,
    on the CPU, or on CUDA first when ``cuda`` and this onnxruntime build has it. Without ``spinning``, its threads
    sleep while they wait for work, for a process where other work (torch's) needs the cores in between."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider",) if cuda and p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), options, providers=providers + ["CPUExecutionProvider"])
