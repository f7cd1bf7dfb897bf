"""How the web service is served: the one owner of gunicorn's settings.

`make serve`, the container's CMD and ``libraries.service.gunicorn_command`` (tests, notebook, benchmarks) all run
    gunicorn -c aml_config/gunicorn.conf.py
Flags given after it override these settings. Environment: HOST (default 127.0.0.1; the container sets 0.0.0.0),
PORT (5000), WORKERS or WEB_CONCURRENCY (2 processes, each loads the model once). The app's own settings
(MODEL_DIR, API_KEY, ALLOW_ANONYMOUS, MAX_BYTES, MAX_PIXELS, MAX_IMAGES, SCORE_THREADS) are in aml_config/service.env.

Why gevent workers: a sync worker serves one connection at a time, so a few clients that send half a request
header and wait stall every worker (gunicorn's docs say sync workers need a buffering proxy in front); gthread
gives each such client a thread until it finishes its header, so as many slow clients as threads stall it too.
A gevent worker parks a waiting client in a greenlet of a few KiB, drops it when its header is not complete
within `keepalive` seconds, and goes on serving; `pre_request` bounds the wait for a body the same way.
The figures are in README.md, "Deployment"; benchmarks/slow_clients.py measures them.
"""
import os
import sys
from pathlib import Path

wsgi_app = "deploymain:make_app()"  # a factory: importing deploymain loads nothing
chdir = str(Path(__file__).resolve().parent.parent / "scripts")  # where deploymain.py lies, here and in /app
bind = [f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '5000'}"]
workers = int(os.environ.get("WORKERS") or os.environ.get("WEB_CONCURRENCY") or 2)

worker_class = "gevent"
worker_connections = 1000  # open connections per worker, slow or not; beyond it a worker stops accepting
keepalive = 5  # seconds a client has to finish its request header (and an idle keep-alive connection lasts)
BODY_TIMEOUT = 10  # (not a gunicorn setting) seconds one read of the body or write of the answer may wait
timeout = 30  # a worker that has not reported for this long (one stuck request) is killed and replaced
graceful_timeout = 10  # on restart or stop, seconds to finish the requests in progress
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

accesslog = "-"
control_socket_disable = True  # no gunicornc control socket: nothing uses it, and it would be a file in $HOME


def pre_request(worker, req):
    """The gevent worker times out an unfinished header but would wait for a body for ever: bound each read of
    it (and each write of the answer) too; the app answers a body that stops coming with 408."""
    sock = getattr(getattr(req, "unreader", None), "sock", None)
    if sock is not None:
        sock.settimeout(BODY_TIMEOUT)


def on_starting(server):
    """Refuse, before binding, to serve anyone on the network without a key (see ``exposure_refusal``), or to
    start on a bundle that is missing or whose files do not belong together (one line, not a worker traceback)."""
    from libraries.errors import UserError
    from libraries.service import exposure_refusal

    refusal = exposure_refusal(server.cfg.address, os.environ)
    if refusal:
        print(refusal, file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("MODEL_DIR"):
        from libraries import bundle

        try:
            bundle.check_files(os.environ["MODEL_DIR"])
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
