"""The web service's entry point (the original sample's name), for gunicorn: ``gunicorn --chdir scripts deploymain:app``.

Configured by the environment: MODEL_DIR (default: DATA_DIR/proc/<datasetName>/ from PARAMETERS.py), API_KEY
(an optional bearer key for /score), MAX_BYTES, MAX_PIXELS, SCORE_THREADS. ``python scripts/deploymain.py``
runs Flask's own development server instead.
"""
import os

from libraries.service import app_from_env

if not os.environ.get("MODEL_DIR"):
    import PARAMETERS

    os.environ["MODEL_DIR"] = os.path.join(PARAMETERS.DATA_DIR, "proc", PARAMETERS.datasetName)

app = app_from_env()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", 5000)))
