"""MLflow run history and sweeps: read back through MLflow's own client; failures only warn."""
import json
import sys
import warnings

import pytest

from libraries import sweep, tracking
from libraries.errors import BadParameter

from conftest import make_dataset, run_script

PIPELINE = ["1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"]
FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.1,1]", "run_mbSize=8"]


def test_flatten_numbers_names_every_number():
    flat = tracking.flatten_numbers({"overall_accuracy": 0.9, "auc": {"a b": 0.8, "c/d?": None}, "confusion_matrix": [[1, 2]],
                                     "labels": ["x"], "ok": True, "nan": float("nan")})
    assert flat == {"overall_accuracy": 0.9, "auc_a b": 0.8, "confusion_matrix_0_0": 1.0, "confusion_matrix_0_1": 2.0}
    assert tracking.metric_name("acc_ünïcode(1)") == "acc__n_code_1_"


def test_pipeline_key_follows_results_not_speed(tmp_path):
    split = tmp_path / "split.json"
    split.write_text('{"train": []}')
    base = {"classifier": "svm", "svm_CVals": [1], "rf_device": "auto", "run_mbSize": 64}
    key = tracking.pipeline_key(base, split)
    assert tracking.pipeline_key({**base, "rf_device": "cpu", "run_mbSize": 8}, split) == key
    assert tracking.pipeline_key({**base, "classifier": "dnn"}, split) != key
    split.write_text('{"train": [["a.jpg", 0]]}')
    assert tracking.pipeline_key(base, split) != key


def test_unwritable_store_warns_once_and_goes_on(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    tracker = tracking.Tracker({"classifier": "svm"}, tmp_path, "toy", tmp_path / "split.json", "test",
                               uri=f"sqlite:///{blocker}/mlruns/mlflow.db")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker:
            tracker.log_metrics({"a": 1.0})
            tracker.log_artifacts(blocker)
    messages = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
    assert len(messages) == 1 and "the pipeline goes on without it" in messages[0]
    assert tracker.enabled is False


def test_disabled_tracking_never_imports_mlflow(tmp_path):
    import subprocess

    code = ("import sys; from libraries.tracking import Tracker; "
            f"t = Tracker({{}}, {str(tmp_path)!r}, 'x', None or __import__('pathlib').Path('nope'), 's', enabled=False); "
            "t.__enter__(); t.log_metrics({'a': 1}); t.__exit__(None, None, None); assert 'mlflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_grid_parsing():
    known = {"classifier": "svm", "svm_CVals": [1], "rf_inputResolution": 224}
    grid = sweep.parse_grid(["classifier=svm,dnn", "svm_CVals=[0.1,1],[10]", "rf_inputResolution=224,320"], known)
    assert grid == {"classifier": ["svm", "dnn"], "svm_CVals": [[0.1, 1], [10]], "rf_inputResolution": [224, 320]}
    assert len(sweep.points(grid)) == 8
    assert sweep.as_set_arguments({"classifier": "dnn", "svm_CVals": [0.1]}) == ["--set", "classifier='dnn'", "--set", "svm_CVals=[0.1]"]
    with pytest.raises(BadParameter, match="not a parameter"):
        sweep.parse_grid(["nope=1,2"], known)
    with pytest.raises(BadParameter, match="expected name=value1,value2"):
        sweep.parse_grid(["classifier"], known)
    assert sweep.split_values('a,"b,c",(1,2)') == ["a", '"b,c"', "(1,2)"]


def test_ranking_uses_cv_accuracy_only():
    rows = [{"point": {"x": 1}, "cv_accuracy": 0.8, "test_accuracy": 0.99, "status": "ok"},
            {"point": {"x": 2}, "cv_accuracy": 0.9, "test_accuracy": 0.50, "status": "ok"},
            {"point": {"x": 3}, "cv_accuracy": None, "test_accuracy": 1.0, "status": "ok"}]
    assert [r["point"]["x"] for r in sweep.rank(rows)] == [2, 1, 3]
    text = sweep.table(sweep.rank(rows), ["x"])
    assert text.splitlines()[1].split()[:2] == ["1", "2"] and text.splitlines()[3].split()[0] == "-"


@pytest.mark.slow
def test_pipeline_run_is_one_mlflow_run_read_back_by_its_client(tmp_path):
    from mlflow.tracking import MlflowClient

    make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8}, size=64)
    for script in PIPELINE:
        run_script(script, tmp_path, *FAST)
    client = MlflowClient(tracking.default_uri(tmp_path))
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # scripts 2, 4 and 5 all logged into one run
    run = runs[0]
    metrics = json.loads((tmp_path / "proc" / "toy" / "metrics.json").read_text())
    assert run.data.params["classifier"] == "svm" and run.data.params["svm_CVals"] == "[0.1, 1]"
    assert run.data.params["rf_inputResolution"] == "64" and "DATA_DIR" in run.data.params
    assert run.data.metrics["overall_accuracy"] == pytest.approx(metrics["overall_accuracy"])
    assert run.data.metrics["class_averaged_accuracy"] == pytest.approx(metrics["class_averaged_accuracy"])
    assert run.data.metrics["svm_cv_accuracy_C_0.1"] <= 1 and "svm_C" in run.data.metrics
    # the data doctor's counts: label issues (script 4), duplicate groups and leaks (script 5, from the split)
    health = metrics["data_health"]
    assert run.data.metrics["label_issues"] == health["label_issues"]
    assert run.data.metrics["data_health_duplicate_groups"] == health["duplicate_groups"]
    assert run.data.metrics["data_health_duplicate_leaking_groups"] == health["duplicate_leaking_groups"]
    assert {"step.2_refineDNN", "step.4_trainSVM", "step.5_evaluate"} <= set(run.data.tags)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "model.onnx", "labels.json", "roc.png", "confusion_matrix.png", "svm_cv_accuracy.png"} <= artifacts
    assert str(tmp_path / "mlruns" / "artifacts") in run.info.artifact_uri  # under DATA_DIR, not the working dir

    # another classifier on the same data is another run, to compare side by side
    run_script("2_refineDNN.py", tmp_path, *FAST, "classifier=dnn", "rf_maxEpochs=2", "rf_numWorkers=0")
    history = client.get_metric_history(
        [r for r in client.search_runs([experiment.experiment_id]) if r.data.params["classifier"] == "dnn"][0].info.run_id,
        "val_error")
    assert [m.step for m in history] == [1, 2]


@pytest.mark.slow
def test_sweep_2x1_gives_two_runs_and_a_ranked_table(tmp_path):
    from mlflow.tracking import MlflowClient

    make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8}, size=64)
    result = run_script("sweep.py", tmp_path, *FAST, extra=["--grid", "svm_CVals=[0.01],[1]", "--grid", "svm_cvFolds=2"])
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    rows = lines[header + 1:header + 3]
    assert [r.split()[0] for r in rows] == ["1", "2"] and all("ok" in r for r in rows)
    cv = [float(r.split("%")[0].split()[-1]) for r in rows]
    assert cv[0] >= cv[1]  # ranked by cross-validated accuracy
    assert "best by cross-validated accuracy on the training split" in result.stdout
    client = MlflowClient(tracking.default_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert sorted(r.data.params["svm_CVals"] for r in runs) == ["[0.01]", "[1]"]
    assert {r.info.run_id for r in runs} == {r.split()[-1] for r in rows}
    # the second point reused the first point's features: nothing was featurized again
    second_log = (tmp_path / "proc" / "toy" / "sweep" / "point2.log").read_text()
    assert "featurizing (0 cached)" not in second_log and "up to date" in second_log


@pytest.mark.slow
def test_unwritable_tracking_location_warns_and_the_run_goes_on(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 6, "vertical": 6}, size=64)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    sets = FAST + [f"track_uri='sqlite:///{blocker}/mlruns/mlflow.db'"]
    for script in PIPELINE:
        result = run_script(script, tmp_path, *sets)
        if script in ("2_refineDNN.py", "4_trainSVM.py", "5_evaluate.py"):
            assert result.stderr.count("MLflow tracking to") == 1, result.stderr
    assert (tmp_path / "proc" / "toy" / "metrics.json").is_file()
