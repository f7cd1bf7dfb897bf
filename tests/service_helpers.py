"""A small exported model, a real gunicorn server on 127.0.0.1, and slow clients, for the service tests."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from libraries.service import gunicorn_command, wait_for_health

SIZE = 64


def export_tiny_model(out_dir: Path, kind: str = "svm", labels=("horizontal", "vertical")) -> Path:
    """EfficientNet-Lite0 at 64 px with a random head (softmax) or a random calibrated SVM, exported as a bundle
    exactly as the pipeline exports one."""
    from libraries import bundle, export, scoring
    from libraries.backbones import build_classifier

    rng = np.random.default_rng(0)
    k = len(labels)
    classifier = build_classifier("efficientnet_lite0", k, SIZE)
    if kind == "dnn":
        head = scoring.dnn_head(classifier.head)
    else:
        head = scoring.svm_head({"coef": rng.normal(size=(k, 1280)).astype(np.float32), "intercept": rng.normal(size=k),
                                 "cal_a": -np.ones(k), "cal_b": np.zeros(k)}, l2_normalize=True)
    bundle.write(out_dir, export.DeployedModel(classifier, head), list(labels), SIZE,
                 {"classifier": kind, "score": scoring.SCORE_MEANING[kind], "raw_score": scoring.RAW_SCORE_MEANING[kind],
                  "backbone": "efficientnet_lite0", "provenance": {"step": "bundle", "made_by": "tests/service_helpers.py"}})
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """The service as ``make serve`` starts it (gunicorn with aml_config/gunicorn.conf.py), on 127.0.0.1 and a
    free port; its output goes to a log file (``log()``); stopped with ``stop()``."""

    def __init__(self, model_dir: Path, workers: int = 2, python_bin: str | None = None, env_extra=None,
                 pythonpath: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "ALLOW_ANONYMOUS")}
        env.update({"MODEL_DIR": str(model_dir), "SCORE_THREADS": "1", **(env_extra or {})})
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.log_file = tempfile.NamedTemporaryFile("w+", prefix="gunicorn-", suffix=".log")  # a pipe could fill up
        self.process = subprocess.Popen(gunicorn_command(self.port, workers, python=python_bin), env=env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT, text=True)
        if not wait_for_health(self.url, 90):
            self.stop()
            raise RuntimeError(f"gunicorn did not come up within 90 s:\n{self.log()}")

    def log(self) -> str:
        """What the server has written so far, stdout and stderr."""
        return Path(self.log_file.name).read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(c) for c in children]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PartialRequests:
    """``n`` connections to 127.0.0.1:``port`` that each send the start of a request and then nothing: by
    default half a header (a slowloris), with ``body=True`` a whole header and one byte of the announced body.
    Bounded (at most 100) and closed on leaving the ``with`` block."""

    HEADER_START = b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    BODY_START = HEADER_START + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"

    def __init__(self, port: int, n: int = 50, body: bool = False):
        if not 0 < n <= 100:
            raise ValueError(f"hold between 1 and 100 partial requests, not {n}")
        self.port, self.n, self.sockets = port, n, []
        self.start = self.BODY_START if body else self.HEADER_START

    def __enter__(self) -> PartialRequests:
        try:
            for _ in range(self.n):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sockets.append(s)
                s.sendall(self.start)
                s.setblocking(False)  # from now on, only looked at without waiting
        except BaseException:
            self.close()
            raise
        return self

    def still_open(self) -> int:
        """How many the server has neither closed nor answered yet."""
        count = 0
        for s in self.sockets:
            try:
                s.recv(1, socket.MSG_PEEK)  # end of stream, reset or an answer: dropped
            except (BlockingIOError, InterruptedError):
                count += 1
            except OSError:
                pass
        return count

    def answers(self) -> list[bytes]:
        """The first line of what the server sent on each connection before closing it (b"" for nothing)."""
        out = []
        for s in self.sockets:
            try:
                out.append(s.recv(4096).split(b"\r\n", 1)[0])
            except OSError:
                out.append(b"")
        return out

    def close(self) -> None:
        for s in self.sockets:
            s.close()

    def __exit__(self, *exc) -> None:
        self.close()


def dockerfile(path: Path) -> tuple[list[tuple[str, str]], dict[str, str], list[str]]:
    """What a (simple) Dockerfile copies, its ENV and its exec-form CMD: ([(source, destination file)], env, cmd).
    Continuation lines are joined; a COPY whose destination ends with '/' puts each source there by its name."""
    import json
    import shlex

    text = path.read_text().replace("\\\n", " ")
    copies, env, cmd = [], {}, []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#") or len(words) < 2:
            continue
        instruction, rest = words[0].upper(), words[1]
        if instruction == "COPY":
            *sources, dest = [w for w in shlex.split(rest) if not w.startswith("--")]
            copies += [(src, dest + Path(src).name if dest.endswith("/") else dest) for src in sources]
        elif instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest))
        elif instruction == "CMD":
            cmd = json.loads(rest)
    return copies, env, cmd
