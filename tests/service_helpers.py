"""A small exported model and a real gunicorn server on 127.0.0.1, for the service tests."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import numpy as np

from libraries.service import gunicorn_command, wait_for_health

SIZE = 64


def export_tiny_model(out_dir: Path, kind: str = "svm") -> Path:
    """EfficientNet-Lite0 at 64 px with a random 2-class head or SVM, exported as the pipeline exports."""
    from libraries import export
    from libraries.backbones import build_classifier

    rng = np.random.default_rng(0)
    classifier = build_classifier("efficientnet_lite0", 2, SIZE)
    if kind == "dnn":
        model = export.DeployedModel(classifier, "dnn")
    else:
        model = export.DeployedModel(classifier, kind, rng.normal(size=(2, 1280)).astype(np.float32),
                                     rng.normal(size=2).astype(np.float32))
    export.export(model, out_dir, ["horizontal", "vertical"], SIZE, "efficientnet_lite0")
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn deploymain:app`` as ``make serve`` starts it, on a free port; stopped with ``stop()``."""

    def __init__(self, model_dir: Path, workers: int = 2, python_bin: str | None = None, env_extra=None,
                 pythonpath: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MODEL_DIR": str(model_dir), "SCORE_THREADS": "1", **(env_extra or {})}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.process = subprocess.Popen(gunicorn_command(self.port, workers, python=python_bin), env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not wait_for_health(self.url, 90):
            output = "" if self.process.poll() is None else self.process.stdout.read()
            self.stop()
            raise RuntimeError(f"gunicorn did not come up within 90 s {output}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(c) for c in children]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
