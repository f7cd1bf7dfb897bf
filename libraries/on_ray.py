"""Featurizing and predicting on Ray Data, past one machine: the same images in, the same numbers out as the
local path (``featurize.iter_batches`` with an ONNX engine).

Ray Data's documented batch-inference pattern: the list of files becomes a dataset; Ray tasks decode and resize
the images (``presets.load_and_preprocess``, streamed); an actor pool runs the ONNX graph, each actor loading
it once, on a GPU when the cluster has one and onnxruntime has CUDA. The results stream back to the driver in
batches, and the local code takes over from there (the feature cache, the CSV). An unreadable image comes back
as a row with its reason, exactly as locally, and the run goes on.

``connect`` joins the cluster that ``RAY_ADDRESS`` names, or starts a local one. Every node must see the image
files and the ONNX file at the same paths (a shared file system) and have this project installed in the same
Python environment (``make venv``, or ``pip install -r requirements.txt && pip install -e .``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import UserError

TOKEN_ADVICE = "needs its token (copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN)"
DECODE_CPUS = 0.5  # each decoding task's share of a CPU: decoding streams beside the actors, never starved by them


def connect(num_cpus: int | None = None) -> dict:
    """Join the cluster at ``RAY_ADDRESS``, or start a local one (with ``num_cpus``, default all cores); return the
    cluster's resources ({'CPU': 2.0, ...})."""
    address = os.environ.get("RAY_ADDRESS") or "local"
    if "ray" not in sys.modules:  # Ray reads this when it is imported, never after
        token = (Path.home() / ".ray" / "auth_token").is_file() or os.environ.get("RAY_AUTH_TOKEN") \
            or os.environ.get("RAY_AUTH_TOKEN_PATH")
        if address != "local" and token:
            # a head started with `ray start` where a token exists checks it, and a client sends it only when told
            os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise UserError("run_engine='ray' needs Ray: .venv/bin/python -m pip install 'ray[data]==2.60.0' "
                        "(make venv installs it)") from None
    if not ray.is_initialized():
        # Ray Data's actors log a C++ "error" on every run about their constructor arguments (ray issue 53727), a
        # false alarm; its Python exceptions still reach the user. RAY_BACKEND_LOG_LEVEL=info shows it all again.
        # (Set after the import: before it, the driver itself logs that it was set.)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if address != "local":
            check_reachable(address)
        try:
            with native_stderr_without(RAY_NOISE):
                ray.init(address=address, num_cpus=num_cpus if address == "local" else None, include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR")
        except ray.exceptions.AuthenticationError:  # how the refusal comes when the head answers in time
            raise UserError(f"the Ray cluster at RAY_ADDRESS={address} refused this machine: it {TOKEN_ADVICE}") from None
        except ConnectionError as err:  # how it comes when the retries run out first
            raise UserError(f"could not join the Ray cluster at RAY_ADDRESS={address} ({err}): check it with "
                            f".venv/bin/ray status; if the head said 'Token authentication is enabled', this machine "
                            f"{TOKEN_ADVICE}; or unset RAY_ADDRESS to start a local Ray") from None
        with warnings.catch_warnings():  # Ray 2.60's own DataContext warns about its own deprecated fields
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own progress bar counts the images
    return ray.cluster_resources()


# what Ray's C++ core prints to the console while it starts, and the message on failure says better: that it took
# its log level from RAY_BACKEND_LOG_LEVEL (set above), and each retry against a head that wants a token
RAY_NOISE = re.compile(r"logging\.cc:\d+: Set ray log level|gcs_client\.cc:\d+: Failed to get cluster ID .*InvalidAuthToken")


@contextlib.contextmanager
def native_stderr_without(noise: re.Pattern):
    """Hold back what is written to file descriptor 2 (C++ code writes there directly, past ``sys.stderr``) while
    the block runs, then write it out but for the lines that ``noise`` matches."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines() if not noise.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``host:port`` that nothing answers on (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # 'auto', 'ray://...': left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"nothing answers at RAY_ADDRESS={address} ({err.strerror or err}): start the head with "
                        f".venv/bin/ray start --head, set RAY_ADDRESS to the address it prints, or unset RAY_ADDRESS "
                        f"to start a local Ray") from None


def shutdown() -> None:
    import ray

    ray.shutdown()


def _path_dataset(paths: list[Path], batch_size: int):
    """A Ray dataset of (position, path), in up to 200 blocks of about ``batch_size`` rows. (``from_items``: measured
    faster here than Arrow tables built in the driver, 77-81 against 61-69 img/s on 600 images.)"""
    import ray

    return ray.data.from_items([{"position": k, "path": str(p)} for k, p in enumerate(paths)],
                               override_num_blocks=max(1, min(len(paths) // max(1, batch_size), 200)))


def _hash(batch: dict) -> dict:
    """A Ray task: the content digest of each of the batch's files (``artifacts.safe_digest``)."""
    from .artifacts import safe_digest

    return {"position": batch["position"], "digest": np.array([safe_digest(p) for p in batch["path"]], dtype="S32")}


def hash_files(paths: list[Path], progress: bool = True, batch_size: int = 256) -> np.ndarray:
    """Every file's content digest (``artifacts.file_digest``, 32 ASCII bytes), computed in Ray tasks where the
    files are: the driver receives 32 bytes per file, never the file."""
    from tqdm.auto import tqdm

    from .artifacts import HASHING_BAR_FROM

    connect()
    digests = np.zeros(len(paths), "S32")
    if not paths:
        return digests
    ds = _path_dataset(paths, batch_size).map_batches(_hash, batch_size=batch_size, batch_format="numpy",
                                                         num_cpus=DECODE_CPUS)
    with tqdm(total=len(paths), desc="hashing on Ray", unit="img", disable=not progress or len(paths) < HASHING_BAR_FROM) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            digests[batch["position"]] = batch["digest"]
            bar.update(len(batch["position"]))
    return digests


def _decode(batch: dict, size: int) -> dict:
    """A Ray task: the batch's files read and resized as the local path does; an unreadable one gets a black image
    and its reason."""
    from .images import ImageError
    from .presets import load_and_preprocess

    images = np.zeros((len(batch["path"]), size, size, 3), np.uint8)
    errors = []
    for k, path in enumerate(batch["path"]):
        try:
            images[k] = load_and_preprocess(Path(path), size)
            errors.append("")
        except ImageError as err:
            errors.append(err.reason)
    return {"position": batch["position"], "image": images, "error": np.array(errors, dtype=str)}


class _OnnxActor:
    """A Ray actor that loads an ONNX graph once and runs its first output on the readable images of each batch."""

    def __init__(self, onnx_path: str, threads: int):
        from .onnx_export import open_session

        self.session = open_session(onnx_path, threads, cuda=True)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: dict) -> dict:
        readable = batch["error"] == ""
        outputs = None
        if readable.any():
            found = self.session.run(None, {self.input_name: np.ascontiguousarray(batch["image"][readable])})[0]
            outputs = np.zeros((len(readable),) + found.shape[1:], found.dtype)
            outputs[readable] = found
        if outputs is None:  # no readable image in this batch: the width of the output is unknown, and not needed
            outputs = np.zeros((len(readable), 0), np.float32)
        return {"position": batch["position"], "output": outputs, "error": batch["error"]}


class RayEngine:
    """An engine for ``featurize.run_batches``: ``onnx_path`` run on Ray Data (``map_images``)."""

    def __init__(self, onnx_path: Path, workers: int | None = None):
        self.onnx_path, self.workers = Path(onnx_path), workers
        resources = connect()  # here, so that a cluster that cannot be joined stops the run before any work
        where = os.environ.get("RAY_ADDRESS") or "a local Ray"
        self.name = f"Ray Data at {where} ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)"

    def digests(self, paths: list[Path], progress: bool = True) -> np.ndarray:
        return hash_files(paths, progress)

    def stream(self, paths: list[Path], size: int, batch_size: int):
        return map_images(paths, self.onnx_path, size, batch_size, self.workers)


def map_images(paths: list[Path], onnx_path: Path, size: int, batch_size: int = 64, workers: int | None = None
               ) -> Iterable[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Run ``onnx_path`` (uint8 (B, size, size, 3) in) on every path, on Ray Data. Yields, like the local path,
    (positions into ``paths``, the outputs of those that were read, [(position, reason)] of those that were not)
    per batch, in no fixed order. ``workers``: the actors (default one per GPU, else one per 2 CPUs of the cluster)."""
    import ray

    resources = connect()
    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 1)
    workers = workers or max(1, gpus or int(cpus // 2))
    per_actor = max(0.5, (cpus - DECODE_CPUS) / workers) if not gpus else 1
    threads = max(1, round(cpus / workers)) if not gpus else 1  # onnxruntime's threads: the actor's share of the cores
    ds = _path_dataset(paths, batch_size).map_batches(_decode, fn_kwargs={"size": size}, batch_size=batch_size, batch_format="numpy",
                        num_cpus=DECODE_CPUS)
    ds = ds.map_batches(_OnnxActor, fn_constructor_kwargs={"onnx_path": str(onnx_path), "threads": threads},
                        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                        num_cpus=per_actor, num_gpus=1 if gpus else 0)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        readable = batch["error"] == ""
        positions = batch["position"]
        failed = [(int(k), str(reason)) for k, reason in zip(positions[~readable], batch["error"][~readable])]
        yield [int(k) for k in positions[readable]], (batch["output"][readable] if readable.any() else None), failed
