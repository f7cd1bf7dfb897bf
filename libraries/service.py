"""The web service: a Flask app that scores images with the exported ONNX model.

It needs onnxruntime, numpy, Pillow, Flask and OpenCV (the same decoding and resizing code as the pipeline,
so served scores equal the pipeline's), and no torch. The model loads once, when the app is created.

- ``POST /score``: the original sample's JSON ``{"input_df": [{"image base64 string": "<base64>"}]}``, or a
  multipart upload with field ``image``. Answers ``label``, ``score``, ``allScores`` (label -> score) and
  ``executionTimeMs``; for several images (at most ``max_images``), a list of such answers.
- ``GET /health``: liveness, with the model's labels.
- ``GET /``: an upload page that shows the prediction (no external assets).
Bad input gets a 4xx answer with a JSON ``error``, never a 500; the status comes from the error's type. With
an API key set, ``/score`` needs ``Authorization: Bearer <key>``.

How it is served (gunicorn, its worker model and timeouts) is ``aml_config/gunicorn.conf.py``'s business;
``gunicorn_command`` starts it with that file, as ``make serve`` and the container do.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from . import bundle
from .errors import MissingArtifact, UserError
from .images import ImageError, ImageTooLarge, read_image
from .presets import eval_preprocess

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # request bodies above this get 413
DEFAULT_MAX_PIXELS = 40_000_000  # decoded images above this get 413 (decompression bombs)
DEFAULT_MAX_IMAGES = 16  # images per request; more get 413 before any is decoded
JSON_FIELD = "image base64 string"
GUNICORN_CONFIG = Path(__file__).resolve().parent.parent / "aml_config" / "gunicorn.conf.py"
# the answer's status for each kind of unusable image: decided by the error's type, never by its wording
IMAGE_ERROR_STATUS = {ImageTooLarge: 413, ImageError: 400}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class Scorer:
    """The deployable bundle, read and checked by ``bundle.read``: image bytes in, probabilities out."""

    def __init__(self, model_dir: Path, threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.bundle = bundle.read(model_dir, threads=threads)
        self.labels, self.meta, self.input_size = self.bundle.labels, self.bundle.meta, self.bundle.input_size
        self.model_path = self.bundle.model_path
        self.max_pixels = max_pixels

    def preprocess(self, data: bytes, name: str) -> np.ndarray:
        """One image's model input; raises ``ImageError`` (or its subclass ``ImageTooLarge``) naming ``name``."""
        return eval_preprocess(read_image(data, min_size=self.input_size, max_pixels=self.max_pixels, name=name),
                               self.input_size)

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, raw scores) of a preprocessed batch."""
        return self.bundle.run(batch)

    def answer(self, probabilities: np.ndarray, raw: np.ndarray, elapsed_ms: float) -> dict:
        best = int(np.argmax(probabilities))
        return {"label": self.labels[best], "score": float(probabilities[best]),
                "allScores": {label: float(p) for label, p in zip(self.labels, probabilities)},
                "rawScores": {label: float(r) for label, r in zip(self.labels, raw)},
                "executionTimeMs": round(elapsed_ms, 3)}


def _too_many_images(count: int, max_images: int) -> BadRequest:
    return BadRequest(f"{count} images in one request, above the limit of {max_images} (MAX_IMAGES): "
                      f"send them in several requests", 413)


def _images_from_request(max_images: int) -> list[tuple[bytes, str]]:
    """(bytes, name) of each image in the request, in either accepted format; BadRequest otherwise.

    The number of images is checked before any of them is decoded."""
    content_type = request.mimetype or ""
    if content_type == "multipart/form-data":
        uploads = request.files.getlist("image")
        if not uploads:
            raise BadRequest("multipart request without a file field named 'image'")
        if len(uploads) > max_images:
            raise _too_many_images(len(uploads), max_images)
        return [(upload.read(), upload.filename or "image") for upload in uploads]
    if content_type == "application/json":
        try:
            body = json.loads(request.get_data(cache=False) or b"")
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(f"malformed JSON ({err})") from None
        rows = body.get("input_df") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise BadRequest('expected {"input_df": [{"image base64 string": "<base64>"}]}')
        if len(rows) > max_images:
            raise _too_many_images(len(rows), max_images)
        images = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get(JSON_FIELD), str):
                raise BadRequest(f'input_df[{i}] has no string field "{JSON_FIELD}"')
            try:
                images.append((base64.b64decode(row[JSON_FIELD], validate=True), f"input_df[{i}]"))
            except (binascii.Error, ValueError):
                raise BadRequest(f"input_df[{i}]: the image is not valid base64") from None
        return images
    raise BadRequest(f"unsupported content type {content_type or '(none)'!r}: send application/json or "
                     f"multipart/form-data", 415)


def create_app(model_dir: str | Path, api_key: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, threads: int | None = None,
               max_images: int = DEFAULT_MAX_IMAGES) -> Flask:
    scorer = Scorer(model_dir, threads=threads, max_pixels=max_pixels)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = max_bytes
    app.json.sort_keys = False
    app.extensions["scorer"] = scorer

    def error(message: str, status: int):
        response = jsonify({"error": message, "status": status})
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest):
        return error(err.message, err.status)

    for error_type, status in IMAGE_ERROR_STATUS.items():  # Flask picks the most specific type's handler
        app.register_error_handler(error_type, lambda err, status=status: error(str(err), status))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        messages = {413: f"request body larger than {max_bytes:,} bytes", 405: f"method {request.method} not allowed here"}
        return error(messages.get(err.code, err.description), err.code)

    @app.errorhandler(ClientDisconnected)
    def body_stopped(err: ClientDisconnected):  # the client went, or the server's read timeout hit (gunicorn.conf.py)
        return error("the request body stopped arriving before the length it announced", 408)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):  # keep serving, and say so in JSON
        app.logger.exception("unexpected error")
        return error(f"internal error ({type(err).__name__})", 500)

    @app.post("/score")
    def score():
        if api_key:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                raise BadRequest("missing or wrong API key: send 'Authorization: Bearer <key>'", 401)
        images = _images_from_request(max_images)
        start = time.perf_counter()
        batch = np.stack([scorer.preprocess(data, name) for data, name in images])
        probabilities, raw = scorer.scores(batch)
        elapsed = (time.perf_counter() - start) * 1000
        answers = [scorer.answer(p, r, elapsed / len(images)) for p, r in zip(probabilities, raw)]
        return jsonify(answers[0] if len(answers) == 1 else answers)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "labels": scorer.labels, "classifier": scorer.meta.get("classifier"),
                        "backbone": scorer.meta.get("backbone"), "score": scorer.meta.get("score"),
                        "auth": bool(api_key)})

    @app.get("/")
    def index():
        return UPLOAD_PAGE.replace("{{AUTH}}", "true" if api_key else "false"), 200, {"Content-Type": "text/html; charset=utf-8"}

    return app


def gunicorn_command(port: int, workers: int = 1, host: str = "127.0.0.1", python: str | None = None,
                     options: tuple[str, ...] | list[str] = (), quiet: bool = True) -> list[str]:
    """The command line that starts the service as ``make serve`` does (same config file), for scripts,
    notebooks, tests and benchmarks. ``quiet``: warnings only, no access log. ``options``: more gunicorn flags,
    which override the config file's settings."""
    command = [python or sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "--bind", f"{host}:{port}",
               "--workers", str(workers)]
    if quiet:
        command += ["--log-level", "warning", "--access-logfile", os.devnull]
    return command + list(options)


def exposure_refusal(addresses, environ) -> str | None:
    """Why the service must not start, or None: listening beyond this machine (any address but loopback or a
    Unix socket) without ``API_KEY`` would let anyone who reaches it use the model, unless ``ALLOW_ANONYMOUS=1``
    says that is meant. ``addresses``: gunicorn's ``cfg.address`` ((host, port) tuples or socket paths)."""
    if environ.get("API_KEY") or environ.get("ALLOW_ANONYMOUS") == "1":
        return None
    exposed = []
    for address in addresses:
        if not isinstance(address, tuple):  # a Unix socket or an inherited descriptor: not a network address
            continue
        host = str(address[0]).strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            loopback = False
        if not loopback:
            exposed.append(f"{host}:{address[1]}")
    if not exposed:
        return None
    return (f"refusing to start: the service would listen on {', '.join(exposed)} without API_KEY, so anyone who "
            f"can reach it could use it; set API_KEY, or set ALLOW_ANONYMOUS=1 to serve without a key on purpose")


def wait_for_health(base_url: str, seconds: float) -> bool:
    """Poll ``base_url/health`` until it answers 200 or ``seconds`` pass; True when the service is up."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def describe(scorer: Scorer) -> str:
    """One line saying which model the service loaded, from where, for the start-up log."""
    return (f"loaded model {scorer.model_path}: classifier {scorer.meta.get('classifier')}, "
            f"backbone {scorer.meta.get('backbone')}, labels {scorer.labels}, input {scorer.input_size} px; "
            f"scores: {scorer.meta.get('score')}")


WORKER_BOOT_ERROR = 3  # gunicorn's exit code for a worker that cannot start: the master stops instead of retrying


def app_from_env() -> Flask:
    """The app as configured by the environment: MODEL_DIR, API_KEY, MAX_BYTES, MAX_PIXELS, MAX_IMAGES,
    SCORE_THREADS. Says on stderr which model it loaded; a missing or stale bundle stops it with one line."""
    try:
        model_dir = os.environ.get("MODEL_DIR")
        if not model_dir:
            raise MissingArtifact("set MODEL_DIR to the folder holding model.onnx, labels.json and deploy.json")
        threads = os.environ.get("SCORE_THREADS")
        app = create_app(model_dir, api_key=os.environ.get("API_KEY") or None,
                         max_bytes=int(os.environ.get("MAX_BYTES") or DEFAULT_MAX_BYTES),
                         max_pixels=int(os.environ.get("MAX_PIXELS") or DEFAULT_MAX_PIXELS),
                         max_images=int(os.environ.get("MAX_IMAGES") or DEFAULT_MAX_IMAGES),
                         threads=int(threads) if threads else None)
    except UserError as err:
        print(f"[{os.getpid()}] error: {err}", file=sys.stderr, flush=True)
        sys.exit(WORKER_BOOT_ERROR)
    print(f"[{os.getpid()}] {describe(app.extensions['scorer'])}", file=sys.stderr, flush=True)
    return app


UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Image classifier</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
 #preview{max-width:100%;max-height:18rem;display:block;margin:1rem 0}
 .bar{display:flex;align-items:center;margin:.25rem 0}
 .bar span{width:9rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
 .bar .track{width:12rem;height:1rem;background:#e4e8ef;margin:0 .5rem}
 .bar .fill{height:100%;background:#3b7dd8}
 #label{font-size:1.6rem;font-weight:600}
 #error{color:#b00020}
</style></head>
<body>
<h1>Image classifier</h1>
<form id="form"><input type="file" id="file" name="image" accept="image/*">
<input type="password" id="key" placeholder="API key" style="display:none">
<button type="submit" id="submit">Classify</button></form>
<img id="preview" alt="">
<div id="label"></div><div id="score"></div><div id="bars"></div><div id="error"></div>
<script>
const needsKey = {{AUTH}};
if (needsKey) document.getElementById('key').style.display = 'inline';
document.getElementById('file').addEventListener('change', e => {
  const f = e.target.files[0]; if (f) document.getElementById('preview').src = URL.createObjectURL(f);
});
document.getElementById('form').addEventListener('submit', async e => {
  e.preventDefault();
  const f = document.getElementById('file').files[0];
  const err = document.getElementById('error'), bars = document.getElementById('bars');
  err.textContent = ''; bars.replaceChildren();
  document.getElementById('label').textContent = ''; document.getElementById('score').textContent = '';
  if (!f) { err.textContent = 'Choose an image first.'; return; }
  const body = new FormData(); body.append('image', f);
  const headers = needsKey ? {'Authorization': 'Bearer ' + document.getElementById('key').value} : {};
  try {
    const r = await fetch('score', {method: 'POST', body, headers});
    const j = await r.json();
    if (!r.ok) { err.textContent = j.error || ('HTTP ' + r.status); return; }
    // scores are calibrated probabilities (0..1, summing to 1): a bar's width is the probability itself
    const percent = p => (100 * Math.min(1, Math.max(0, Number(p)))).toFixed(1) + '%';
    document.getElementById('label').textContent = j.label;
    document.getElementById('score').textContent =
      'probability ' + percent(j.score) + ', ' + j.executionTimeMs.toFixed(1) + ' ms';
    for (const [label, p] of Object.entries(j.allScores)) {
      const row = document.createElement('div'); row.className = 'bar';
      const name = document.createElement('span'); name.textContent = label; name.title = label;
      const track = document.createElement('div'); track.className = 'track';
      const fill = document.createElement('div'); fill.className = 'fill'; fill.style.width = percent(p);
      const value = document.createElement('code'); value.textContent = percent(p);
      track.append(fill); row.append(name, track, value); bars.append(row);
    }
  } catch (x) { err.textContent = 'request failed: ' + x; }
});
</script></body></html>
"""
