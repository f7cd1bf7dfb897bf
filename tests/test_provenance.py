"""What an artifact was made from, and the refusal of a stale one, on small artifacts made here."""
from pathlib import Path

import numpy as np
import pytest

import PARAMETERS
from libraries import featurize, layout, provenance, settings
from libraries.artifacts import save_json
from libraries.errors import MissingArtifact, StaleArtifact


def setup(tmp_path, *overrides):
    P = settings.load(PARAMETERS, [f"DATA_DIR={str(tmp_path)!r}", "datasetName=toy", *overrides])
    return vars(P), layout.dataset_paths(P)


def write_chain(params, paths, labels=("a", "b")):
    split = {"labels": list(labels), "train": [["a/1.jpg", 0], ["b/1.jpg", 1]], "test": [["a/2.jpg", 0]]}
    save_json(paths.split, {**split, "provenance": provenance.record("split", params, paths)})
    save_json(paths.model_meta, {"refined": False, "provenance": provenance.record("model", params, paths)})
    featurize.save_features(paths.features, np.ones((3, 4)), ["a/1.jpg", "b/1.jpg", "a/2.jpg"], [0, 1, 0],
                            ["train", "train", "test"], "key", provenance.record("features", params, paths))


def test_parameters_that_do_not_change_results_are_listed_once():
    assert "rf_device" in provenance.NOT_RESULT_PARAMETERS and "run_mbSize" in provenance.NOT_RESULT_PARAMETERS
    params = vars(settings.load(PARAMETERS, []))
    assert set(params) - set(provenance.result_parameters(params)) == set(provenance.NOT_RESULT_PARAMETERS)


def test_a_fixed_model_ignores_refinement_settings_and_the_split():
    params, _ = setup(".")
    fixed = provenance.step_parameters(params, "model")
    assert provenance.step_parameters({**params, "rf_maxEpochs": 3, "rf_device": "cpu"}, "model") == fixed
    refined = provenance.step_parameters({**params, "classifier": "dnn"}, "model")
    assert refined["refined"] and provenance.step_parameters({**params, "classifier": "dnn", "rf_maxEpochs": 3}, "model") != refined
    assert provenance.step_parameters({**params, "classifier": "dnn", "rf_device": "cpu"}, "model") == refined
    assert provenance.step_inputs("model", "svm") == () and provenance.step_inputs("model", "dnn") == ("split",)


def test_the_chain_passes_when_current(tmp_path):
    params, paths = setup(tmp_path)
    write_chain(params, paths)
    provenance.check_chain(paths, params, upto="svm")
    assert provenance.identity(paths.features) == provenance.identity(paths.features)  # stable, content-based


def test_a_rewritten_npz_with_the_same_content_keeps_its_identity(tmp_path):
    params, paths = setup(tmp_path)
    write_chain(params, paths)
    before = provenance.identity(paths.features)
    write_chain(params, paths)
    assert provenance.identity(paths.features) == before


def test_a_changed_input_names_the_script_to_rerun(tmp_path):
    params, paths = setup(tmp_path)
    write_chain(params, paths)
    write_chain(params, paths, labels=("a", "b"))
    save_json(paths.split, {"labels": ["a", "b", "c"], "train": [], "test": [],
                            "provenance": provenance.record("split", params, paths)})
    with pytest.raises(StaleArtifact, match=r"features.npz is out of date: split.json changed after it was made "
                                            r"\(scripts/1_prepareData.py ran again\): rerun scripts/3_runDNN.py"):
        provenance.check_chain(paths, params, upto="svm")


def test_a_changed_parameter_is_named_with_both_values(tmp_path):
    params, paths = setup(tmp_path)
    write_chain(params, paths)
    with pytest.raises(StaleArtifact, match=r"split.json was made with randomSeed=0, but randomSeed is 7 now: "
                                            r"rerun scripts/1_prepareData.py"):
        provenance.check_chain(paths, {**params, "randomSeed": 7}, upto="features")
    # the suggested --set pastes into a shell as it is, a list value included
    save_json(paths.svm_meta, {"provenance": provenance.record("svm", params, paths)})
    with pytest.raises(StaleArtifact) as refused:
        provenance.check(paths, "svm", {**params, "svm_CVals": [1, 10]})
    assert "or --set 'svm_CVals=[0.0001, 0.001, 0.01, 0.1, 1, 10, 100]' to use it as it is" in str(refused.value)


def test_missing_and_unrecorded_artifacts(tmp_path):
    params, paths = setup(tmp_path)
    with pytest.raises(MissingArtifact, match="split.json does not exist: run scripts/1_prepareData.py first"):
        provenance.check_chain(paths, params, upto="model")
    save_json(paths.split, {"labels": ["a"], "train": [], "test": []})  # as an older version wrote it
    with pytest.raises(StaleArtifact, match="does not record what it was made from.*rerun scripts/1_prepareData.py"):
        provenance.check_chain(paths, params, upto="model")


def test_a_step_time_is_shown_only_for_the_artifact_it_made(tmp_path):
    params, paths = setup(tmp_path)
    write_chain(params, paths)
    assert provenance.step_times(paths) == {}
    for step, seconds in (("features", 28.04), ("split", 2.0), ("model", 7.5)):
        provenance.record_time(paths, step, seconds)
    assert provenance.step_times(paths) == {"split": 2.0, "model": 7.5, "features": 28.0}  # pipeline order
    save_json(paths.model_meta, {"refined": False, "note": "made again", "provenance": provenance.record("model", params, paths)})
    assert provenance.step_times(paths) == {"split": 2.0, "features": 28.0}  # not the new model.json's time
    paths.split.unlink()
    assert provenance.step_times(paths) == {"features": 28.0}


def test_the_readme_names_every_parameter_that_never_makes_an_artifact_stale():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("Parameters that change only speed"):][:600]
    missing = [name for name in provenance.NOT_RESULT_PARAMETERS
               if f"`{name}`" not in paragraph and not (name.startswith("track_") and "`track_*`" in paragraph)]
    assert not missing, f"README's list lacks {missing}"
