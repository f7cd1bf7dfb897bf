import pytest

import PARAMETERS
from libraries import settings
from libraries.errors import BadParameter, DatasetError
from libraries.settings import apply_overrides, parse_value

from conftest import run_script

DEFAULTS, ANNOTATIONS = settings.module_parameters(PARAMETERS)


def test_every_parameter_has_a_type_and_a_one_line_comment():
    text = (settings.Path(PARAMETERS.__file__)).read_text().splitlines()
    for name in DEFAULTS:
        lines = [l for l in text if l.startswith(f"{name}:")]
        assert len(lines) == 1, name
        assert "  # " in lines[0], f"{name} lacks a comment"
        assert name in ANNOTATIONS


def test_original_names_are_kept_and_typo_fixed():
    for name in ("classifier", "datasetName", "ratioTrainTest", "imagesSplitBy", "rf_pretrainedModel", "rf_inputResolution",
                 "rf_dropoutRate", "rf_mbSize", "rf_maxEpochs", "rf_maxTrainImages", "rf_lrPerMb", "rf_momentumPerMb",
                 "rf_l2RegWeight", "rf_boFreezeWeights", "rf_boBalanceTrainingSet", "svm_boL2Normalize", "run_mbSize",
                 "svm_CVals", "DATA_DIR", "rf_pretrainedWeights"):
        assert name in DEFAULTS
    assert "rf_inputResoluton" not in DEFAULTS
    assert DEFAULTS["rf_lrPerMb"] is None and DEFAULTS["rf_learningRate"] == 0.001  # the warm-up + cosine schedule
    assert DEFAULTS["datasetName"] == "elpvSolarCells" and DEFAULTS["rf_pretrainedModel"] == "efficientnet_lite0"


def test_parse_value_literal_or_bare_word():
    assert parse_value("[0.1, 1]") == [0.1, 1]
    assert parse_value("3") == 3
    assert parse_value("None") is None
    assert parse_value("True") is True
    assert parse_value("solar") == "solar"
    assert parse_value("'quoted'") == "quoted"


def test_overrides_apply_and_check_types():
    p = apply_overrides(DEFAULTS, ANNOTATIONS, ["datasetName=solar", "svm_CVals=[0.1,1]", "ratioTrainTest=1",
                                                "rf_maxTrainImages=100", "rf_pretrainedWeights=None"])
    assert p["datasetName"] == "solar" and p["svm_CVals"] == [0.1, 1]
    assert p["ratioTrainTest"] == 1.0 and isinstance(p["ratioTrainTest"], float)
    assert p["rf_maxTrainImages"] == 100 and p["rf_pretrainedWeights"] is None
    assert DEFAULTS["datasetName"] == "elpvSolarCells"  # the defaults are not touched


@pytest.mark.parametrize("item, message", [
    ("nosuchParam=1", "not a parameter"),
    ("rf_mbsize=3", "Did you mean 'rf_mbSize'"),
    ("datsetName=x", "Did you mean 'datasetName'"),
    ("classifer=svm", "Did you mean 'classifier'"),
    ("rf_mbSize=big", "must be of type int, got str"),
    ("rf_mbSize=2.5", "must be of type int, got float"),
    ("rf_boFreezeWeights=1", "must be of type bool"),
    ("svm_CVals=3", r"must be of type list, got int 3; write a list in brackets, quoted for the shell: --set 'svm_CVals=\[3\]'"),
    ("svm_CVals=1,10", r"got tuple \(1, 10\); write a list in brackets, quoted for the shell: --set 'svm_CVals=\[1, 10\]'"),
    ("rf_lrPerMb=0.01", r"--set 'rf_lrPerMb=\[0.01\]'"),
    ("rf_mbSiz=3", "Did you mean 'rf_mbSize'"),
    ("datasetName", "expected name=value"),
])
def test_bad_overrides_say_what_is_wrong(item, message):
    with pytest.raises(BadParameter, match=message):
        apply_overrides(DEFAULTS, ANNOTATIONS, [item])


@pytest.mark.parametrize("changes, message", [
    ({"classifier": "knn"}, "classifier must be one of"),
    ({"ratioTrainTest": 1.0}, "strictly between 0 and 1"),
    ({"svm_CVals": [0.1, -1]}, "positive numbers"),
    ({"rf_lrPerMb": []}, "non-empty list"),
    ({"rf_pretrainedWeights": "/no/such/file.pth"}, "no such file"),
    ({"rf_pretrainedModel": "vgg16"}, "rf_pretrainedModel must be one of"),
])
def test_validate_refuses_impossible_values(changes, message):
    with pytest.raises(BadParameter, match=message):
        settings.validate({**DEFAULTS, **changes}, backbone_names=["efficientnet_lite0", "resnet18"])


@pytest.mark.parametrize("name", ["/abs/dir", "../images/x", "a/b", ".."])
def test_a_dataset_name_that_is_a_path_is_refused(name):
    with pytest.raises(DatasetError, match="is not a plain folder name"):
        settings.validate({**DEFAULTS, "datasetName": name})


def test_native_input_size_by_default():
    assert DEFAULTS["rf_inputResolution"] is None
    settings.validate({**DEFAULTS, "rf_inputResolution": None})
    with pytest.raises(BadParameter, match="at least 32 pixels"):
        settings.validate({**DEFAULTS, "rf_inputResolution": 16})


@pytest.mark.parametrize("name", ["/abs/dir", "../images/x"])
def test_script_refuses_a_path_as_dataset_name(tmp_path, name):
    (tmp_path / "images" / "toy").mkdir(parents=True)
    result = run_script("1_prepareData.py", tmp_path, f"datasetName={name}", check=False)
    assert result.returncode == 2 and "is not a plain folder name" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "proc").exists()


def test_script_stops_before_work_on_bad_set(tmp_path):
    result = run_script("1_prepareData.py", tmp_path, "rf_mbSize=big", check=False)
    assert result.returncode == 2
    assert "rf_mbSize must be of type int" in result.stderr
    assert not (tmp_path / "proc").exists()


def test_missing_data_dir_is_one_clear_sentence(tmp_path):
    result = run_script("1_prepareData.py", tmp_path / "nowhere", "datasetName=toy", check=False)
    assert result.returncode == 1
    assert "does not exist: set DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_print_params_shows_every_parameter_in_effect_and_does_no_work(tmp_path):
    result = run_script("1_prepareData.py", tmp_path, "datasetName=mine", "rf_maxEpochs=3", extra=["--print-params"])
    lines = result.stdout.splitlines()
    assert len(lines) == len(DEFAULTS)
    assert any(line.split() == ["datasetName", "'mine'", "(--set)"] for line in lines)
    assert any(line.split() == ["rf_maxEpochs", "3", "(--set)"] for line in lines)
    assert any(line.split() == ["classifier", "'svm'"] for line in lines)
    assert not (tmp_path / "proc").exists()


def test_every_script_ends_with_its_elapsed_time(tmp_path):
    from libraries.settings import elapsed

    assert [elapsed(8.24), elapsed(185), elapsed(3725)] == ["8.2 s", "3 min 05 s", "1 h 02 min"]
    assert run_script("5_evaluate.py", tmp_path, "datasetName=toy", check=False).stdout.strip() == ""  # an error: no time
