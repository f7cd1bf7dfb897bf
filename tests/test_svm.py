import numpy as np
from sklearn.svm import LinearSVC

from libraries import svm


def blobs(n_per_class=30, classes=3, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    x = np.concatenate([c + rng.normal(0, 1, (n_per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_select_c_uses_only_the_given_data_and_reports_each_c():
    x, y = blobs()
    table = svm.select_c(x, y, [1e-4, 1, 100], folds=5)
    assert [row["C"] for row in table] == [1e-4, 1, 100]
    assert all(0 <= row["cv_accuracy"] <= 1 for row in table)
    assert max(row["cv_accuracy"] for row in table) > 0.9


def test_best_c_prefers_the_smallest_on_ties():
    table = [{"C": 0.1, "cv_accuracy": 0.8}, {"C": 1.0, "cv_accuracy": 0.9}, {"C": 10.0, "cv_accuracy": 0.9}]
    assert svm.best_c(table) == 1.0


def test_folds_shrink_to_the_smallest_class():
    assert svm.cv_folds(np.array([0, 0, 0, 1, 1]), 5) == 2
    assert svm.cv_folds(np.array([0] * 10 + [1] * 10), 5) == 5


def test_binary_svm_is_kept_as_two_opposite_rows():
    x, y = blobs(classes=2)
    x = svm.l2_normalize(x)
    model = svm.fit(x, y, 1.0, num_classes=2)
    assert model["coef"].shape == (2, 16)
    np.testing.assert_allclose(model["coef"][0], -model["coef"][1])
    reference = LinearSVC(C=1.0, class_weight="balanced", max_iter=20000, random_state=0).fit(x, y)
    scores = svm.decision_scores(x, model["coef"], model["intercept"], l2=False)
    np.testing.assert_array_equal(scores.argmax(1), reference.predict(x))
    np.testing.assert_allclose(scores[:, 1], reference.decision_function(x), rtol=1e-4, atol=1e-5)


def test_multiclass_scores_match_sklearn():
    x, y = blobs(classes=3)
    model = svm.fit(svm.l2_normalize(x), y, 0.5, num_classes=3)
    reference = LinearSVC(C=0.5, class_weight="balanced", max_iter=20000, random_state=0).fit(svm.l2_normalize(x), y)
    np.testing.assert_allclose(svm.decision_scores(x, model["coef"], model["intercept"]),
                               reference.decision_function(svm.l2_normalize(x)), rtol=1e-4, atol=1e-5)


def test_l2_normalize():
    x = svm.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0, 0]])
