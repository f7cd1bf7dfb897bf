import numpy as np
import pytest

from libraries import evaluation, plots


def test_metrics_on_a_known_three_class_case():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 0, 0, 1, 1, 1, 2, 0]] + 0.01 * np.arange(8)[:, None]
    m = evaluation.compute_metrics(y, scores, ["a", "b", "c"], "svm")
    assert m["overall_accuracy"] == pytest.approx(6 / 8)
    assert m["per_class_accuracy"] == {"a": 0.75, "b": 1.0, "c": 0.5}
    assert m["class_averaged_accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["precision"]["a"] == pytest.approx(0.75) and m["recall"]["c"] == pytest.approx(0.5)
    for key in ("classifier", "overall_accuracy", "class_averaged_accuracy", "per_class_accuracy", "auc", "macro_auc",
                "confusion_matrix", "labels"):
        assert key in m
    assert m["macro_auc"] == pytest.approx(np.mean(list(m["auc"].values())))


def test_two_classes_and_perfect_auc():
    y = np.array([0, 0, 1, 1])
    scores = np.array([[1, -1], [0.5, -0.5], [-0.2, 0.2], [-2, 2]])
    m = evaluation.compute_metrics(y, scores, ["ok", "bad"], "svm")
    assert m["auc"] == {"ok": 1.0, "bad": 1.0} and m["overall_accuracy"] == 1.0
    assert "overall accuracy:        100.00 %" in evaluation.report(m)


def test_a_class_absent_from_the_test_set():
    y = np.array([0, 0, 1])
    scores = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]], float)
    m = evaluation.compute_metrics(y, scores, ["a", "b", "c"], "dnn")
    assert m["per_class_accuracy"]["c"] is None and m["auc"]["c"] is None
    assert m["recall"]["c"] is None and m["precision"]["c"] is None and m["f1"]["c"] is None  # 0/0: n/a, not 0%
    assert m["precision"]["b"] == pytest.approx(0.5) and m["recall"]["b"] == 1.0
    assert m["class_averaged_accuracy"] == pytest.approx(0.75)
    assert "n/a" in evaluation.report(m)


def test_plots_draw(tmp_path):
    from libraries.artifacts import save_figure

    y = np.array([0, 1, 2, 1])
    scores = np.random.default_rng(0).normal(size=(4, 3))
    m = evaluation.compute_metrics(y, scores, ["a", "b", "c"], "svm")
    save_figure(tmp_path / "roc.png", plots.roc_curves(y, scores, ["a", "b", "c"], m))
    save_figure(tmp_path / "cm.png", plots.confusion_matrices(np.array(m["confusion_matrix"]), ["a", "b", "c"]))
    save_figure(tmp_path / "svm.png", plots.svm_cv_accuracy([{"C": 0.1, "cv_accuracy": 0.5, "cv_std": 0.1},
                                                             {"C": 1.0, "cv_accuracy": 0.7, "cv_std": 0.05}], 1.0))
    save_figure(tmp_path / "rf.png", plots.refine_errors([{"epoch": 1, "train_error": 0.5, "val_error": 0.4}], kept_epoch=1))
    for name in ("roc.png", "cm.png", "svm.png", "rf.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
