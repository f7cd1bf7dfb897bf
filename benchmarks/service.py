"""Web-service latency and throughput, against the raw in-process onnxruntime call, in one run.

Exports EfficientNet-Lite0 at 224 px with a 2-class SVM head (the default pipeline's graph) to a temporary
folder, starts gunicorn on 127.0.0.1 as ``make serve`` does, and measures on one 300x300 demo JPEG:
- single-image latency: the raw onnxruntime call in-process (preprocessed input), the in-process decode +
  preprocess + call, and the HTTP round trip (original JSON format), as p50/p99 and the HTTP/raw ratio;
- requests per second with 1, 2 and 4 concurrent clients.
    python benchmarks/service.py [--requests 100] [--workers 2] [--threads 1] [--worker-class sync]
"""
from __future__ import annotations

import argparse
import base64
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from libraries import bundle, elpv, export, scoring
from libraries.backbones import build_classifier
from libraries.service import Scorer, gunicorn_command, wait_for_health


def export_benchmark_model(out_dir: Path, size: int = 224) -> tuple[Path, bytes]:
    """EfficientNet-Lite0 with a random calibrated 2-class SVM head (the default pipeline's graph), exported as a
    bundle into ``out_dir``; returns the folder and one 300x300 demo JPEG's bytes."""
    rng = np.random.default_rng(0)
    head = scoring.svm_head({"coef": rng.normal(size=(2, 1280)).astype(np.float32), "intercept": rng.normal(size=2),
                             "cal_a": -np.ones(2), "cal_b": np.zeros(2)}, l2_normalize=True)
    bundle.write(out_dir, export.DeployedModel(build_classifier("efficientnet_lite0", 2, size), head),
                 ["functional", "defective"], size,
                 {"classifier": "svm", "score": scoring.SCORE_MEANING["svm"],
                  "raw_score": scoring.RAW_SCORE_MEANING["svm"],
                  "backbone": "efficientnet_lite0", "provenance": {"step": "bundle", "made_by": "benchmarks"}})
    paths, _, _ = elpv.read_labels(elpv.package_labels_file())
    image = out_dir / "cell.jpg"
    Image.open(elpv.package_labels_file().parent / paths[0]).convert("RGB").save(image, "JPEG", quality=90)
    return out_dir, image.read_bytes()


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):6.1f} ms, p99 {np.percentile(ms, 99):6.1f} ms"


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="requests per measurement")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker, and in-process")
    parser.add_argument("--worker-class", default=None,
                        help="gunicorn worker class instead of aml_config/gunicorn.conf.py's (gevent), to compare")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp, data = export_benchmark_model(Path(tmp))

        scorer = Scorer(tmp, threads=args.threads)
        batch = scorer.preprocess(data, "cell.jpg")[None]
        timed(lambda: scorer.scores(batch), 10)
        raw = timed(lambda: scorer.scores(batch), args.requests)
        in_process = timed(lambda: scorer.scores(scorer.preprocess(data, "cell.jpg")[None]), args.requests)

        port = 5000 + os.getpid() % 1000
        env = {**os.environ, "MODEL_DIR": str(tmp), "SCORE_THREADS": str(args.threads)}
        options = ["--worker-class", args.worker_class] if args.worker_class else []
        server = subprocess.Popen(gunicorn_command(port, args.workers, options=options), env=env)
        url = f"http://127.0.0.1:{port}/score"
        body = {"input_df": [{"image base64 string": base64.b64encode(data).decode()}]}
        try:
            if not wait_for_health(url.rsplit("/", 1)[0], 60):
                raise RuntimeError("the service did not come up within 60 s")
            session = requests.Session()
            post = lambda s=session: s.post(url, json=body, timeout=30).raise_for_status()  # noqa: E731
            timed(post, 10)
            http = timed(post, args.requests)
            throughput = {}
            for clients in (1, 2, 4):
                sessions = [requests.Session() for _ in range(clients)]
                per_client = max(1, args.requests // clients)
                start = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(lambda s: [post(s) for _ in range(per_client)], sessions))
                throughput[clients] = clients * per_client / (time.perf_counter() - start)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"EfficientNet-Lite0 + SVM at 224 px, one 300x300 JPEG, {os.cpu_count()} CPU cores; "
          f"gunicorn {args.workers} {args.worker_class or 'gevent'} worker(s), onnxruntime {args.threads} thread(s) each; {args.requests} requests each")
    print(f"raw onnxruntime call, in-process:        {percentiles(raw)}")
    print(f"decode + preprocess + call, in-process:  {percentiles(in_process)}")
    print(f"HTTP round trip (JSON, base64):          {percentiles(http)}")
    print(f"HTTP / raw, p50: {np.percentile(http, 50) / np.percentile(raw, 50):.2f}x;  "
          f"p99: {np.percentile(http, 99) / np.percentile(raw, 99):.2f}x")
    print("throughput: " + ", ".join(f"{c} client(s) {rps:.1f} req/s" for c, rps in throughput.items()))


if __name__ == "__main__":
    main()
