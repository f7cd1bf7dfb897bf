"""The web service: a Flask app that scores images with the exported ONNX model.

It needs onnxruntime, numpy, Pillow, Flask and OpenCV (the same decoding and resizing code as the pipeline,
so served scores equal the pipeline's), and no torch. The model loads once, when the app is created.

- ``POST /score``: the original sample's JSON ``{"input_df": [{"image base64 string": "<base64>"}]}``, or a
  multipart upload with field ``image``. Answers ``label``, ``score``, ``allScores`` (label -> score) and
  ``executionTimeMs``; for several images in ``input_df``, a list of such answers.
- ``GET /health``: liveness, with the model's labels.
- ``GET /``: an upload page that shows the prediction (no external assets).
Bad input gets a 4xx answer with a JSON ``error``, never a 500. With an API key set, ``/score`` needs
``Authorization: Bearer <key>``.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import time
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .images import ImageError, read_image
from .presets import eval_preprocess

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # request bodies above this get 413
DEFAULT_MAX_PIXELS = 40_000_000  # decoded images above this get 413 (decompression bombs)
JSON_FIELD = "image base64 string"


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class Scorer:
    """The ONNX model with its labels: image bytes in, scores out."""

    def __init__(self, model_dir: Path, threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        import onnxruntime as ort

        model_dir = Path(model_dir)
        for name in ("model.onnx", "labels.json", "deploy.json"):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir / name} does not exist: run scripts 1-5 (5_evaluate.py exports the model) "
                                        f"or set MODEL_DIR to a folder holding model.onnx, labels.json and deploy.json")
        self.labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
        self.meta = json.loads((model_dir / "deploy.json").read_text(encoding="utf-8"))
        self.input_size = int(self.meta["input_size"])
        self.max_pixels = max_pixels
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, data: bytes, name: str) -> np.ndarray:
        try:
            return eval_preprocess(read_image(data, min_size=self.input_size, max_pixels=self.max_pixels, name=name),
                                   self.input_size)
        except ImageError as err:
            raise BadRequest(f"{name}: {err.reason}", 413 if "pixels" in err.reason else 400) from None

    def scores(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def answer(self, scores: np.ndarray, elapsed_ms: float) -> dict:
        best = int(np.argmax(scores))
        return {"label": self.labels[best], "score": float(scores[best]),
                "allScores": {label: float(s) for label, s in zip(self.labels, scores)},
                "executionTimeMs": round(elapsed_ms, 3)}


def _images_from_request() -> list[tuple[bytes, str]]:
    """(bytes, name) of each image in the request, in either accepted format; BadRequest otherwise."""
    content_type = request.mimetype or ""
    if content_type == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest("multipart request without a file field named 'image'")
        return [(upload.read(), upload.filename or "image")]
    if content_type == "application/json":
        try:
            body = json.loads(request.get_data(cache=False) or b"")
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(f"malformed JSON ({err})") from None
        rows = body.get("input_df") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise BadRequest('expected {"input_df": [{"image base64 string": "<base64>"}]}')
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
               max_pixels: int = DEFAULT_MAX_PIXELS, threads: int | None = None) -> Flask:
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

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        messages = {413: f"request body larger than {max_bytes:,} bytes", 405: f"method {request.method} not allowed here"}
        return error(messages.get(err.code, err.description), err.code)

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
        images = _images_from_request()
        start = time.perf_counter()
        batch = np.stack([scorer.preprocess(data, name) for data, name in images])
        scores = scorer.scores(batch)
        elapsed = (time.perf_counter() - start) * 1000
        answers = [scorer.answer(row, elapsed / len(images)) for row in scores]
        return jsonify(answers[0] if len(answers) == 1 else answers)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "labels": scorer.labels, "classifier": scorer.meta.get("classifier"),
                        "backbone": scorer.meta.get("backbone"), "auth": bool(api_key)})

    @app.get("/")
    def index():
        return UPLOAD_PAGE.replace("{{AUTH}}", "true" if api_key else "false"), 200, {"Content-Type": "text/html; charset=utf-8"}

    return app


def gunicorn_command(port: int, workers: int = 1, host: str = "127.0.0.1", python: str | None = None) -> list[str]:
    """The command line that starts the service as ``make serve`` does, for scripts, notebooks and tests."""
    import sys

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    return [python or sys.executable, "-m", "gunicorn", "--chdir", str(scripts), "--bind", f"{host}:{port}",
            "--workers", str(workers), "--no-control-socket", "--log-level", "warning", "deploymain:app"]


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


def app_from_env() -> Flask:
    """The app as configured by the environment: MODEL_DIR, API_KEY, MAX_BYTES, MAX_PIXELS, SCORE_THREADS."""
    model_dir = os.environ.get("MODEL_DIR")
    if not model_dir:
        raise RuntimeError("set MODEL_DIR to the folder holding model.onnx, labels.json and deploy.json")
    threads = os.environ.get("SCORE_THREADS")
    return create_app(model_dir, api_key=os.environ.get("API_KEY") or None,
                      max_bytes=int(os.environ.get("MAX_BYTES", DEFAULT_MAX_BYTES)),
                      max_pixels=int(os.environ.get("MAX_PIXELS", DEFAULT_MAX_PIXELS)),
                      threads=int(threads) if threads else None)


UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Image classifier</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
 #preview{max-width:100%;max-height:18rem;display:block;margin:1rem 0}
 .bar{display:flex;align-items:center;margin:.25rem 0}
 .bar span{width:9rem;overflow:hidden;text-overflow:ellipsis}
 .bar div{height:1rem;background:#3b7dd8;margin:0 .5rem}
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
  err.textContent = ''; bars.innerHTML = '';
  document.getElementById('label').textContent = ''; document.getElementById('score').textContent = '';
  if (!f) { err.textContent = 'Choose an image first.'; return; }
  const body = new FormData(); body.append('image', f);
  const headers = needsKey ? {'Authorization': 'Bearer ' + document.getElementById('key').value} : {};
  try {
    const r = await fetch('score', {method: 'POST', body, headers});
    const j = await r.json();
    if (!r.ok) { err.textContent = j.error || ('HTTP ' + r.status); return; }
    document.getElementById('label').textContent = j.label;
    document.getElementById('score').textContent = 'score ' + j.score.toFixed(4) + ', ' + j.executionTimeMs.toFixed(1) + ' ms';
    const values = Object.values(j.allScores), lo = Math.min(0, ...values), hi = Math.max(...values);
    for (const [label, s] of Object.entries(j.allScores)) {
      const row = document.createElement('div'); row.className = 'bar';
      const name = document.createElement('span'); name.textContent = label;
      const bar = document.createElement('div'); bar.style.width = (hi > lo ? 12 * (s - lo) / (hi - lo) : 0) + 'rem';
      const value = document.createElement('code'); value.textContent = s.toFixed(3);
      row.append(name, bar, value); bars.append(row);
    }
  } catch (x) { err.textContent = 'request failed: ' + x; }
});
</script></body></html>
"""
