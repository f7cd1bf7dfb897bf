"""Step 6: call the running web service with an image, in the original sample's JSON format.

Posts the image N times, then prints the label, its probability, the server's own time and the round-trip latency
percentiles. Without IMAGE it sends the first test image of datasetName.

    python scripts/6_callWebservice.py --url http://127.0.0.1:5000/score [--key KEY] [-n 5] [IMAGE]
"""
import base64
import time
from pathlib import Path

import numpy as np
import requests

import PARAMETERS
from libraries import layout, settings
from libraries.artifacts import load_json
from libraries.errors import UserError
from libraries.service import wait_for_health


def add_arguments(parser):
    parser.add_argument("image", nargs="?", help="image file to classify (default: the first test image)")
    parser.add_argument("--url", default="http://127.0.0.1:5000/score", help="the service's /score URL")
    parser.add_argument("--key", default=None, help="the service's API key, sent as 'Authorization: Bearer KEY'")
    parser.add_argument("-n", "--repeat", type=int, default=5, help="number of calls (default 5)")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the service to come up")


def main():
    P, args = settings.parse(PARAMETERS, description=__doc__, add_arguments=add_arguments)
    image = Path(args.image) if args.image else first_test_image(layout.dataset_paths(P))
    if not image.is_file():
        raise UserError(f"{image} is not a file")
    body = {"input_df": [{"image base64 string": base64.b64encode(image.read_bytes()).decode("ascii")}]}
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    if args.wait:
        wait_for_health(args.url.rsplit("/", 1)[0], args.wait)

    session = requests.Session()
    latencies, answer = [], None
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        try:
            response = session.post(args.url, json=body, headers=headers, timeout=60)
        except requests.exceptions.RequestException as err:
            raise UserError(f"cannot reach {args.url} ({type(err).__name__}): is the service running? (make serve)") from None
        latencies.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise UserError(f"the service answered HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
    print(f"image: {image}")
    print(f"label: {answer['label']}, probability: {answer['score']:.4f}")
    print("probabilities: " + ", ".join(f"{k} {v:.4f}" for k, v in answer["allScores"].items()))
    print(f"server time: {answer['executionTimeMs']:.1f} ms; round trip over {len(latencies)} call(s): "
          f"p50 {np.percentile(latencies, 50):.1f} ms, p90 {np.percentile(latencies, 90):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")


def first_test_image(paths) -> Path:
    if not paths.split.is_file():
        raise UserError(f"give an IMAGE, or run scripts 1-5 for dataset {paths.dataset_name!r} ({paths.split} does not "
                        f"exist) so that its first test image can be sent; --set datasetName=... picks another dataset")
    return paths.images / load_json(paths.split)["test"][0][0]


if __name__ == "__main__":
    settings.run(main)
