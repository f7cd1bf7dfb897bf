"""Where everything lives: the one owner of every artifact's file name, and of the script that writes it.

``DATA_DIR/images/<dataset>/<class>/...`` holds the images; ``DATA_DIR/proc/<dataset>/`` every artifact. The
deployable bundle (``BUNDLE_*``) is a folder of its own kind: the service is pointed at it and needs nothing else.
"""
from __future__ import annotations

from pathlib import Path

# the deployable bundle: written by bundle.write, read by bundle.read
BUNDLE_MODEL = "model.onnx"
BUNDLE_LABELS = "labels.json"
BUNDLE_META = "deploy.json"
BUNDLE_FILES = (BUNDLE_MODEL, BUNDLE_LABELS, BUNDLE_META)
# in the image folder: the user's own list of test images (written by scripts/0_downloadData.py for the demo)
DEDICATED_TEST = "dedicatedTestImages.tsv"

# the script that writes each step's artifacts: what a message tells the user to (re)run
SCRIPTS = {
    "download": "scripts/0_downloadData.py",
    "split": "scripts/1_prepareData.py",
    "model": "scripts/2_refineDNN.py",
    "features": "scripts/3_runDNN.py",
    "svm": "scripts/4_trainSVM.py",
    "evaluation": "scripts/5_evaluate.py",
}


class DatasetPaths:
    """Where one dataset's images and artifacts live; every artifact file is named once, here."""

    def __init__(self, data_dir: Path, dataset_name: str):
        self.data_dir = Path(data_dir)
        self.dataset_name = dataset_name
        self.images = self.data_dir / "images" / dataset_name
        self.proc = proc = self.data_dir / "proc" / dataset_name
        self.dedicated_test = self.images / DEDICATED_TEST
        self.download_report = proc / "download_report.tsv"
        self.split = proc / "split.json"
        self.image_report = proc / "unreadable_images.tsv"
        self.duplicates = proc / "duplicates.csv"
        self.model_meta = proc / "model.json"
        self.model_weights = proc / "model.pt"
        self.checkpoint = proc / "refine_checkpoint.pt"
        self.refine_plot = proc / "refine_errors.png"
        self.featurizer_onnx = proc / "featurizer.onnx"
        self.featurizer_meta = proc / "featurizer.json"
        self.feature_cache = proc / "feature_cache"
        self.features = proc / "features.npz"
        self.feature_shards = proc / "features_parquet"  # the vectors of a large features.npz (featurize.save_features)
        self.svm = proc / "svm.npz"
        self.svm_meta = proc / "svm.json"
        self.svm_plot = proc / "svm_cv_accuracy.png"
        self.suspects = proc / "suspects.csv"
        self.feature_map_plot = proc / "feature_map.png"
        self.to_label = proc / "to_label.csv"
        self.metrics = proc / "metrics.json"
        self.step_times = proc / "step_times.json"
        self.roc_plot = proc / "roc.png"
        self.confusion_plot = proc / "confusion_matrix.png"
        self.test_scores = proc / "test_scores.npz"
        self.test_predictions = proc / "test_predictions.csv"
        self.report = proc / "report.html"
        self.annotation_log = proc / "annotation_log.jsonl"
        self.mlflow_run = proc / "mlflow_run.json"
        self.sweep = proc / "sweep"
        self.sweep_results = self.sweep / "results.tsv"
        self.bundle = proc  # the deployable bundle lives beside the artifacts it was made from
        self.deploy_onnx = proc / BUNDLE_MODEL
        self.labels = proc / BUNDLE_LABELS
        self.deploy_meta = proc / BUNDLE_META

    def sweep_log(self, number: int) -> Path:
        return self.sweep / f"point{number}.log"

    def feature_cache_dir(self, key: str) -> Path:
        return self.feature_cache / key

    def plots(self) -> list[tuple[Path, str]]:
        """The plots a report shows, with their titles, in order."""
        return [(self.roc_plot, "ROC curves"), (self.confusion_plot, "Confusion matrix"),
                (self.svm_plot, "SVM: cross-validated accuracy per C"), (self.refine_plot, "DNN refinement")]


def dataset_paths(params) -> DatasetPaths:
    return DatasetPaths(Path(params.DATA_DIR).expanduser().resolve(), params.datasetName)


def mlflow_store(data_dir: Path) -> tuple[Path, Path]:
    """The default MLflow store: its SQLite database and its artifact folder, under DATA_DIR/mlruns/."""
    root = Path(data_dir).resolve() / "mlruns"
    return root / "mlflow.db", root / "artifacts"
