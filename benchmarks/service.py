"""Web-service latency and throughput, against the raw in-process onnxruntime call, in one run.

Exports EfficientNet-Lite0 at 224 px with a 2-class SVM head (the default pipeline's graph) to a temporary
folder, starts gunicorn on 127.0.0.1 as ``make serve`` does, and measures on one 300x300 demo JPEG:
- single-image latency: the raw onnxruntime call in-process (preprocessed input), the in-process decode +
  preprocess + call, and the HTTP round trip (original JSON format), as p50/p99 and the HTTP/raw ratio;
- requests per second with 1, 2 and 4 concurrent clients.
    python benchmarks/service.py [--requests 100] [--workers 2] [--threads 1]
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

from libraries import elpv, export
from libraries.backbones import build_classifier
from libraries.service import Scorer, gunicorn_command, wait_for_health

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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        model = export.DeployedModel(build_classifier("efficientnet_lite0", 2, 224), "svm",
                                     rng.normal(size=(2, 1280)).astype(np.float32), rng.normal(size=2).astype(np.float32))
        export.export(model, tmp, ["functional", "defective"], 224, "efficientnet_lite0")
        paths, _, _ = elpv.read_labels(elpv.package_labels_file())
        image = tmp / "cell.jpg"
        Image.open(elpv.package_labels_file().parent / paths[0]).convert("RGB").save(image, "JPEG", quality=90)
        data = image.read_bytes()

        scorer = Scorer(tmp, threads=args.threads)
        batch = scorer.preprocess(data, "cell.jpg")[None]
        timed(lambda: scorer.scores(batch), 10)
        raw = timed(lambda: scorer.scores(batch), args.requests)
        in_process = timed(lambda: scorer.scores(scorer.preprocess(data, "cell.jpg")[None]), args.requests)

        port = 5000 + os.getpid() % 1000
        env = {**os.environ, "MODEL_DIR": str(tmp), "SCORE_THREADS": str(args.threads)}
        server = subprocess.Popen(gunicorn_command(port, args.workers), env=env)
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
          f"gunicorn {args.workers} worker(s), onnxruntime {args.threads} thread(s) each; {args.requests} requests each")
    print(f"raw onnxruntime call, in-process:        {percentiles(raw)}")
    print(f"decode + preprocess + call, in-process:  {percentiles(in_process)}")
    print(f"HTTP round trip (JSON, base64):          {percentiles(http)}")
    print(f"HTTP / raw, p50: {np.percentile(http, 50) / np.percentile(raw, 50):.2f}x;  "
          f"p99: {np.percentile(http, 99) / np.percentile(raw, 99):.2f}x")
    print("throughput: " + ", ".join(f"{c} client(s) {rps:.1f} req/s" for c, rps in throughput.items()))


if __name__ == "__main__":
    main()
