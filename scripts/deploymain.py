"""The web service's entry point (the original sample's name). gunicorn serves ``deploymain:make_app()`` with the
settings in aml_config/gunicorn.conf.py (``make serve``, the container); ``python scripts/deploymain.py`` runs
Flask's own development server instead, on 127.0.0.1.

Configured by the environment: MODEL_DIR (default: the results folder of DATA_DIR and datasetName from
PARAMETERS.py), API_KEY (an optional bearer key for /score), MAX_BYTES, MAX_PIXELS, MAX_IMAGES, SCORE_THREADS; all
in aml_config/service.env.
"""
import os

from libraries.service import app_from_env


def make_app():
    """The app for the bundle in MODEL_DIR, or in the default dataset's results folder when it is not set."""
    if not os.environ.get("MODEL_DIR"):
        import PARAMETERS
        from libraries.layout import DatasetPaths

        os.environ["MODEL_DIR"] = str(DatasetPaths(PARAMETERS.DATA_DIR, PARAMETERS.datasetName).bundle)
    return app_from_env()


def main():
    make_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", 5000)))


if __name__ == "__main__":
    main()
