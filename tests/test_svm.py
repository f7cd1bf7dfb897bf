import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from libraries import scoring, svm
from libraries.errors import DatasetError


def blobs(n_per_class=30, classes=3, dim=16, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    x = np.concatenate([c + rng.normal(0, spread, (n_per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_select_c_reports_each_c_on_the_given_data():
    x, y = blobs()
    table = svm.select_c(x, y, [1e-4, 1, 100], folds=5)
    assert [row["C"] for row in table] == [1e-4, 1, 100]
    assert all(0 <= row["cv_accuracy"] <= 1 for row in table)
    assert max(row["cv_accuracy"] for row in table) > 0.9


def test_training_never_sees_the_test_rows():
    """Whatever the test rows hold, the CV table, the chosen C and the fitted SVM are the same: neither C selection
    nor calibration can leak the test set."""
    x, y = blobs(n_per_class=40, classes=2, spread=4.0, seed=3)
    subset = np.array(["train", "test"] * 40)
    first_model, first_table = svm.train(x, y, subset, 2, [0.001, 0.1, 10], folds=4)
    rng = np.random.default_rng(9)
    poisoned = x.copy()
    poisoned[subset == "test"] = rng.normal(0, 50, poisoned[subset == "test"].shape)
    flipped = y.copy()
    flipped[subset == "test"] = 1 - flipped[subset == "test"]
    model, table = svm.train(poisoned, flipped, subset, 2, [0.001, 0.1, 10], folds=4)
    assert table == first_table
    for name in svm.ARRAYS:
        np.testing.assert_array_equal(model[name], first_model[name])
    # and the test rows do matter when they are used for training: the check above can fail
    leaked, leaked_table = svm.train(poisoned, flipped, np.full(80, "train"), 2, [0.001, 0.1, 10], folds=4)
    assert leaked_table != first_table


def test_a_class_with_one_training_image_is_left_out_with_a_note():
    x, y = blobs(n_per_class=10, classes=3)
    keep = np.r_[0:20, 20]  # class 2 keeps one image
    model, _ = svm.train(x[keep], y[keep], np.full(21, "train"), 3, [1.0], folds=5)
    assert model["left_out"] == [2] and model["num_train_images"] == 20 and model["folds"] == 5
    probabilities, _ = scoring.score(x, scoring.svm_head(model, True))
    assert probabilities[:, 2].max() < 1e-12 and (probabilities[:20].argmax(1) == y[:20]).mean() > 0.9


def test_training_needs_two_classes():
    x, y = blobs(classes=2)
    with pytest.raises(DatasetError, match="fewer than two classes have at least 2 training images"):
        svm.train(x, np.zeros_like(y), np.full(len(y), "train"), 2, [1.0])


def test_best_c_prefers_the_smallest_on_ties():
    table = [{"C": 0.1, "cv_accuracy": 0.8}, {"C": 1.0, "cv_accuracy": 0.9}, {"C": 10.0, "cv_accuracy": 0.9}]
    assert svm.best_c(table) == 1.0


def test_folds_shrink_to_the_smallest_class():
    assert svm.cv_folds(np.array([0, 0, 0, 1, 1]), 5) == 2
    assert svm.cv_folds(np.array([0] * 10 + [1] * 10), 5) == 5


@pytest.mark.parametrize("classes", [2, 3])
def test_probabilities_are_sklearns_calibrated_ones(classes):
    x, y = blobs(n_per_class=40, classes=classes, spread=2.5)
    xn = svm.l2_normalize(x)
    model = svm.fit(xn, y, 0.5, num_classes=classes, folds=5)
    probabilities, margins = scoring.score(x, scoring.svm_head(model, l2_normalize=True))
    reference = CalibratedClassifierCV(LinearSVC(C=0.5, class_weight="balanced", max_iter=20000, random_state=0),
                                       method="sigmoid", ensemble=False,
                                       cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(xn, y)
    np.testing.assert_allclose(probabilities, reference.predict_proba(xn), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    svc = reference.calibrated_classifiers_[0].estimator
    decision = svc.decision_function(xn)
    if classes == 2:  # kept as two opposite rows
        np.testing.assert_allclose(margins, np.stack([-decision, decision], 1), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(margins, decision, rtol=1e-4, atol=1e-5)
    assert (probabilities.argmax(1) == y).mean() > 0.8


def test_a_class_without_training_images_gets_no_probability():
    x, y = blobs(classes=2)
    model = svm.fit(svm.l2_normalize(x), y, 1.0, num_classes=3)  # class 2 has no training image
    probabilities, _ = scoring.score(x, scoring.svm_head(model, True))
    assert probabilities[:, 2].max() < 1e-12
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_saved_svm_is_refused_when_its_arrays_changed(tmp_path):
    from libraries.errors import StaleArtifact

    x, y = blobs(classes=2)
    model, table = svm.train(x, y, np.full(len(y), "train"), 2, [1.0])
    svm.save(tmp_path / "svm.npz", tmp_path / "svm.json", model, table, True, ["a", "b"], {"step": "svm"})
    arrays, meta = svm.load(tmp_path / "svm.npz", tmp_path / "svm.json")
    np.testing.assert_array_equal(arrays["coef"], model["coef"])
    assert meta["C"] == 1.0 and meta["l2_normalize"] is True and meta["num_train_images"] == len(y) == 60
    svm.save(tmp_path / "other.npz", tmp_path / "other.json", {**model, "coef": model["coef"] * 2}, table, True,
             ["a", "b"], {})
    (tmp_path / "other.npz").replace(tmp_path / "svm.npz")  # another run's arrays beside this run's metadata
    with pytest.raises(StaleArtifact, match="svm.npz is missing or is not the file svm.json was written with"):
        svm.load(tmp_path / "svm.npz", tmp_path / "svm.json")


def test_l2_normalize():
    x = svm.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0, 0]])


def test_c_and_calibration_of_a_refined_network_are_judged_on_held_out_images_only():
    """svmDnnRefined: the SVM is fit on the images the network trained on, but each C is scored, and the sigmoids
    fit, on the held-out (validation) images alone."""
    x, y = blobs(n_per_class=30, classes=2, spread=3.0, seed=5)
    held = np.zeros(60, bool)
    held[::4] = True
    model, table = svm.train_on_held_out(x, y, ~held, held, 2, [0.001, 0.1, 10])
    xn = svm.l2_normalize(x)
    for row in table:  # each C's figure is its accuracy on the held-out images, nothing else
        fitted = LinearSVC(C=row["C"], class_weight="balanced", max_iter=20000, random_state=0).fit(xn[~held], y[~held])
        assert row["cv_accuracy"] == pytest.approx((fitted.predict(xn[held]) == y[held]).mean())
    from sklearn.frozen import FrozenEstimator

    fitted = LinearSVC(C=model["C"], class_weight="balanced", max_iter=20000, random_state=0).fit(xn[~held], y[~held])
    reference = CalibratedClassifierCV(FrozenEstimator(fitted), method="sigmoid").fit(xn[held], y[held])
    probabilities, _ = scoring.score(x, scoring.svm_head(model, True))
    np.testing.assert_allclose(probabilities, reference.predict_proba(xn), atol=1e-5)
    assert model["num_train_images"] == 45 and model["num_held_out_images"] == 15
    assert "validation images the refined network did not train on" in model["chosen_on"]
