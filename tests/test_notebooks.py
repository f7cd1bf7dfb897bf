"""The notebooks' widgets driven from plain Python, the HTML report, and all three notebooks executed headless."""
import html
import os

import nbformat
import pytest
from nbclient import NotebookClient

from libraries import annotate, report, results
from libraries.artifacts import load_json
from libraries.errors import StaleArtifact

from conftest import FAKE_EVALUATION_SETS, REPO, fake_evaluation, make_dataset, run_script

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.1,1]", "run_mbSize=8", "track_boMlflow=False"]


@pytest.fixture
def evaluated(tmp_path):
    """A DATA_DIR with an evaluation as scripts 1-5 leave it (fake features, real formats and provenance)."""
    paths = fake_evaluation(tmp_path, {"cat": 4, "dog": 4})
    return tmp_path, paths.images, paths


def test_image_browser_dropdown_relabels(evaluated):
    from libraries.widgets import ImageBrowser

    _, images, paths = evaluated
    proc = paths.proc
    browser = ImageBrowser(images, paths.split, proc / "log.jsonl", subset="train", per_page=3)
    assert browser.position.value.startswith("page 1 of 2")
    card, dropdown, _ = browser.cards[0]
    rel = browser.items()[0][0]
    dropdown.value = "dog" if dropdown.value == "cat" else "cat"  # what a click in the dropdown does
    entry = annotate.read_log(proc / "log.jsonl")[-1]
    assert entry["path"] == rel and entry["action"] == "relabel" and (images / entry["new_path"]).is_file()
    browser.cards[1][2].click()  # exclude
    assert annotate.read_log(proc / "log.jsonl")[-1]["action"] == "exclude"
    browser.undo.click()
    assert annotate.read_log(proc / "log.jsonl")[-1]["action"] == "undo"
    browser.next.click()
    assert browser.page == 1


def test_image_browser_shows_suspects_first_with_given_and_suggested_labels(evaluated):
    from libraries.widgets import ImageBrowser

    _, images, paths = evaluated
    train = load_json(paths.split)["train"]
    last = train[-1][0]
    suspects = [{"path": last, "given_label": "cat", "suggested_label": "dog", "quality": 0.01, "label_issue": True}]
    browser = ImageBrowser(images, paths.split, paths.proc / "log.jsonl", per_page=3, suspects=suspects)
    assert browser.order.value == "suspects first" and browser.items()[0][0] == last
    assert "looks like <b>dog</b>" in browser.cards[0][0].children[1].value
    browser.order.value = "file order"
    assert [i[0] for i in browser.items()] == [p for p, _ in train]
    assert ImageBrowser(images, paths.split, paths.proc / "log.jsonl").order.options == ("file order",)


def test_result_browser_steps_through_mistakes(evaluated):
    from libraries.widgets import ResultBrowser

    _, images, paths = evaluated
    rb = ResultBrowser(paths, only_wrong=False)
    assert len(rb.selection()) == len(load_json(paths.split)["test"])
    rb.next.click()
    assert rb.index == 1 and "true:" in rb.text.value and "%" in rb.bars.value
    rb.only_wrong.value = True
    assert all(not r["correct"] for r in rb.selection())
    assert rb.cam.disabled  # no explainer given: the toggle is off


def test_results_of_a_changed_split_are_refused(evaluated):
    _, images, paths = evaluated
    rel = load_json(paths.split)["train"][0][0]
    annotate.exclude(images, paths.split, paths.annotation_log, rel)  # split.json changes: the features are stale
    with pytest.raises(StaleArtifact, match="features.npz changed after it was made|rerun"):
        results.load_for(paths)


def test_results_for_other_parameters_are_refused(evaluated):
    import PARAMETERS
    from libraries import settings

    _, _, paths = evaluated
    params = vars(settings.load(PARAMETERS, [f"DATA_DIR={str(paths.data_dir)!r}", "datasetName=toy", *FAKE_EVALUATION_SETS]))
    assert len(results.load_for(paths, params)) == len(load_json(paths.split)["test"])
    with pytest.raises(StaleArtifact, match="classifier='dnn' needs a refined DNN, but model.json holds the fixed"):
        results.load_for(paths, {**params, "classifier": "dnn"})
    with pytest.raises(StaleArtifact, match=r"svm.json was made with svm_CVals=\[1.0\], but svm_CVals is \[0.1\] now"):
        results.load_for(paths, {**params, "svm_CVals": [0.1]})


def test_labels_are_escaped_in_every_page(tmp_path):
    """A label or file name that is HTML stays text in the report and the result browser."""
    from libraries.widgets import ResultBrowser

    hostile = "<script>alert(1)</script>"
    folder = "<img src=x onerror=alert(2)>"
    paths = fake_evaluation(tmp_path, {folder: 4, "plain": 4})
    # a label that cannot be a folder name (it has a slash), as a URL list could give
    paths.metrics.write_text(paths.metrics.read_text(encoding="utf-8").replace(folder, hostile), encoding="utf-8")
    page = report.render(paths)
    assert hostile not in page and folder not in page
    assert f"<td>{html.escape(hostile)}</td>" in page
    rb = ResultBrowser(paths)
    shown = rb.text.value + rb.bars.value
    assert hostile not in shown and folder not in shown
    assert html.escape(hostile) in rb.bars.value
    first = rb.selection()[0]
    assert html.escape(first["path"]) in rb.text.value


def test_report_is_self_contained_and_shows_metrics(evaluated):
    _, images, paths = evaluated
    path = report.write(paths)
    page = path.read_text()
    metrics = load_json(paths.metrics)
    assert f"{100 * metrics['overall_accuracy']:.2f}%" in page
    assert "calibrated probability" in page and "sum to 1" in page
    assert "src=\"http" not in page and "href=\"http" not in page  # everything inlined
    wrong = sum(1 for r in results.load_for(paths) if not r["correct"])
    assert page.count("<figure>") == wrong and page.count("data:image/jpeg;base64,") == wrong


def test_report_never_shows_a_plot_left_from_another_kind_of_run(evaluated):
    _, _, paths = evaluated
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(paths.refine_plot)  # as yesterday's dnn run would have left it
    assert load_json(paths.metrics)["classifier"] == "svm"
    assert "DNN refinement" not in report.render(paths)


def test_report_renders_in_headless_chromium(evaluated, chromium):
    from selenium.webdriver.common.by import By

    _, images, paths = evaluated
    path = report.write(paths)
    chromium.get(path.as_uri())
    summary = chromium.find_element(By.ID, "summary").text
    assert "calibrated probabilit" in chromium.find_element(By.ID, "score-scale").text
    metrics = load_json(paths.metrics)
    assert "overall accuracy" in summary and f"{100 * metrics['overall_accuracy']:.2f}%" in summary
    loaded = chromium.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert loaded and all(loaded)


@pytest.mark.slow
def test_all_three_notebooks_execute(tmp_path):
    make_dataset(tmp_path / "images" / "toy", {"horizontal": 8, "vertical": 8}, size=64)
    for script in ("1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"):
        run_script(script, tmp_path, *FAST)
    for name in ("showImages", "showResults", "deploy"):
        notebook = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), f"{name} is stored with outputs"
        parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(parameters) == 1
        parameters[0].source = f"SET = {FAST!r}"
        client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}})
        env_before = os.environ.get("DATA_DIR")
        os.environ["DATA_DIR"] = str(tmp_path)
        try:
            client.execute()
        finally:
            if env_before is None:
                os.environ.pop("DATA_DIR", None)
            else:
                os.environ["DATA_DIR"] = env_before
        errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name}: {errors}"
        if name == "deploy":
            answer = [o for o in notebook.cells[-3].outputs if o.get("output_type") == "execute_result"][0]
            assert "'label'" in answer["data"]["text/plain"] and "'allScores'" in answer["data"]["text/plain"]
