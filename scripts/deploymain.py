"""The web service's entry point (the original sample's name), for gunicorn: ``gunicorn -c aml_config/gunicorn.conf.py``
(``make serve``) serves ``deploymain:app`` with the settings in that file.

Configured by the environment: MODEL_DIR (default: DATA_DIR/proc/<datasetName>/ from PARAMETERS.py), API_KEY
(an optional bearer key for /score), MAX_BYTES, MAX_PIXELS, MAX_IMAGES, SCORE_THREADS; all in
aml_config/service.env. ``python scripts/deploymain.py`` runs Flask's own development server instead, on 127.0.0.1.
"""
import os

from libraries.service import app_from_env

if not os.environ.get("MODEL_DIR"):
    import PARAMETERS
    from libraries.layout import DatasetPaths

    os.environ["MODEL_DIR"] = str(DatasetPaths(PARAMETERS.DATA_DIR, PARAMETERS.datasetName).bundle)

app = app_from_env()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", 5000)))
