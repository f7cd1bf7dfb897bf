"""Does the web service keep answering while slow clients hold connections open? One run per server candidate.

Exports EfficientNet-Lite0 at 224 px with a 2-class SVM head to a temporary folder and, for each candidate,
starts the service on 127.0.0.1 with 2 workers (gunicorn with aml_config/gunicorn.conf.py, as `make serve`
does, the worker class overridden per candidate), then:
- times normal ``POST /score`` calls (one 300x300 JPEG, a new connection each) with no slow client;
- opens ``--slow`` connections that each send ``POST /score HTTP/1.1\\r\\nHost: x\\r\\n`` and then nothing
  (``--partial body``: a whole header announcing 1000 bytes of body, then one byte), and, while they are
  held, times the same calls again (a call with no answer within ``--call-timeout`` seconds counts as failed;
  three failures in a row end the candidate's run);
- watches the held connections for up to ``--hold`` seconds: when does the server drop them?
Loopback only; the slow connections are bounded in number (at most 100) and time, and closed at the end.
    python benchmarks/slow_clients.py [--candidates sync gthread gevent waitress] [--slow 50] [--calls 20]
                                      [--partial header|body]
The service runs gevent workers (requirements.txt); a candidate whose package is not installed (waitress, by
default) is skipped with a note.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from service import export_benchmark_model  # benchmarks/service.py

from libraries.service import gunicorn_command, wait_for_health

REPO = Path(__file__).resolve().parent.parent
PARTIAL = {  # what each slow client sends before it falls silent
    "header": b"POST /score HTTP/1.1\r\nHost: x\r\n",
    "body": b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
}
CANDIDATES = {  # name: (the package it needs, gunicorn options, or None for waitress)
    "sync": ("gunicorn", ["--worker-class", "sync"]),
    "gthread": ("gunicorn", ["--worker-class", "gthread", "--threads", "4"]),
    "gevent": ("gevent", ["--worker-class", "gevent"]),
    "waitress": ("waitress", None),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, port: int, env: dict) -> subprocess.Popen:
    _, options = CANDIDATES[name]
    if options is not None:
        command = gunicorn_command(port, workers=2, options=options)
    else:  # waitress: one process, its own event loop buffers each request before a thread runs it
        command = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "--threads=4",
                   "--channel-timeout=5", "--cleanup-interval=1", "--call", "deploymain:make_app"]
        env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), env.get("PYTHONPATH", "")])}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed_calls(url: str, body: dict, n: int, call_timeout: float) -> list[float]:
    """Latency (ms) of ``n`` calls, each on a new connection; a call with no 200 answer counts as inf."""
    out, failures_in_a_row = [], 0
    for _ in range(n):
        start = time.perf_counter()
        try:
            ok = requests.post(url, json=body, timeout=call_timeout).status_code == 200
        except requests.RequestException:
            ok = False
        out.append((time.perf_counter() - start) * 1000 if ok else float("inf"))
        failures_in_a_row = 0 if ok else failures_in_a_row + 1
        if failures_in_a_row == 3:
            break
    return out


def hold_partial_requests(port: int, n: int, partial: bytes) -> list[socket.socket]:
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(partial)
        held.append(s)
    return held


def dropped_after(held: list[socket.socket], opened_at: float, hold: float) -> list[float]:
    """Seconds after opening at which the server closed each held connection (inf: still open after ``hold``)."""
    when = [float("inf")] * len(held)
    while time.monotonic() - opened_at < hold and any(w == float("inf") for w in when):
        open_ones = [i for i, w in enumerate(when) if w == float("inf")]
        readable, _, _ = select.select([held[i] for i in open_ones], [], [], 0.2)
        for s in readable:
            i = held.index(s)
            try:
                s.recv(4096, socket.MSG_DONTWAIT)  # end of stream, or an error answer before closing: dropped
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # reset: dropped
                pass
            when[i] = time.monotonic() - opened_at
    return when


def summary(ms: list[float], wanted: int) -> str:
    answered = [m for m in ms if m != float("inf")]
    tried = f"answered {len(answered):2d}/{wanted}" + (f" (gave up after {len(ms)})" if len(ms) < wanted else "")
    if not answered:
        return tried
    worst = "no answer" if len(answered) < len(ms) else f"{max(answered):7.1f} ms"
    return f"{tried}, p50 {np.percentile(answered, 50):7.1f} ms, max {worst}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--slow", type=int, default=50, help="partial requests held open (at most 100)")
    parser.add_argument("--partial", choices=list(PARTIAL), default="header",
                        help="slow clients stop within the request header (default) or at the start of the body")
    parser.add_argument("--calls", type=int, default=20, help="normal /score calls per measurement")
    parser.add_argument("--call-timeout", type=float, default=5.0, help="seconds a normal call may take")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the partial requests are held at most")
    args = parser.parse_args()
    if not 0 < args.slow <= 100:
        parser.error("--slow must be between 1 and 100")

    with tempfile.TemporaryDirectory() as tmp:
        tmp, data = export_benchmark_model(Path(tmp))
        body = {"input_df": [{"image base64 string": base64.b64encode(data).decode()}]}
        env = {**os.environ, "MODEL_DIR": str(tmp), "SCORE_THREADS": "1"}

        print(f"{args.slow} partial requests (the {args.partial} unfinished) held open, {args.calls} normal calls "
              f"(EfficientNet-Lite0 + SVM, 224 px, one 300x300 JPEG), 2 workers, {os.cpu_count()} CPU cores")
        for name in args.candidates:
            if importlib.util.find_spec(CANDIDATES[name][0]) is None:
                print(f"{name:9s} skipped: {CANDIDATES[name][0]} is not installed")
                continue
            port = free_port()
            server = start(name, port, env)
            held = []
            try:
                if not wait_for_health(f"http://127.0.0.1:{port}", 60):
                    print(f"{name:9s} did not come up within 60 s")
                    continue
                url = f"http://127.0.0.1:{port}/score"
                timed_calls(url, body, 5, args.call_timeout)  # warm-up
                quiet = timed_calls(url, body, args.calls, args.call_timeout)
                opened_at = time.monotonic()
                held = hold_partial_requests(port, args.slow, PARTIAL[args.partial])
                time.sleep(0.5)  # let the server accept and start reading them
                loaded = timed_calls(url, body, args.calls, args.call_timeout)
                drops = dropped_after(held, opened_at, args.hold)
                dropped = [d for d in drops if d != float("inf")]
                drop_text = (f"all {len(drops)} dropped after {min(dropped):.1f}-{max(dropped):.1f} s"
                             if len(dropped) == len(drops) else f"{len(dropped)}/{len(drops)} dropped within {args.hold:.0f} s")
                print(f"{name:9s} no slow client: {summary(quiet, args.calls)}")
                print(f"{'':9s} {args.slow} held:    {summary(loaded, args.calls)}; slow clients: {drop_text}")
            finally:
                for s in held:
                    s.close()
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()


if __name__ == "__main__":
    main()
