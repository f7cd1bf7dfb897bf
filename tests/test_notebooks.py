"""The notebooks' widgets driven from plain Python, the HTML report, and all three notebooks executed headless."""
import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from libraries import annotate, report, results
from libraries.artifacts import load_json, save_json, save_npz
from libraries.dataset import find_classes, make_split

from conftest import REPO, make_dataset, run_script

FAST = ["datasetName=toy", "rf_inputResolution=64", "svm_CVals=[0.1,1]", "run_mbSize=8", "track_boMlflow=False"]


@pytest.fixture
def evaluated(tmp_path):
    """A DATA_DIR with a fake evaluation: split, test scores and metrics, as script 5 leaves them."""
    images = make_dataset(tmp_path / "images" / "toy", {"cat": 4, "dog": 4}, size=48)
    proc = tmp_path / "proc" / "toy"
    classes, _ = find_classes(images)
    split, _ = make_split(classes, images, 0.5, seed=0)
    save_json(proc / "split.json", split)
    test = split["test"]
    scores = np.array([[1.0, -1.0], [-0.5, 0.5], [2.0, -2.0], [-1.0, 1.0]], np.float32)[: len(test)]
    save_npz(proc / "test_scores.npz", paths=np.array([p for p, _ in test]), labels=np.array([l for _, l in test]), scores=scores)
    from libraries.evaluation import compute_metrics

    save_json(proc / "metrics.json", compute_metrics(np.array([l for _, l in test]), scores, split["labels"], "svm"))
    return tmp_path, images, proc


def test_image_browser_dropdown_relabels(evaluated):
    from libraries.widgets import ImageBrowser

    _, images, proc = evaluated
    browser = ImageBrowser(images, proc / "split.json", proc / "log.jsonl", subset="train", per_page=3)
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


def test_result_browser_steps_through_mistakes(evaluated):
    from libraries.widgets import ResultBrowser

    _, images, proc = evaluated
    rb = ResultBrowser(proc, images, only_wrong=True)
    assert all(not r["correct"] for r in rb.selection())
    rb.only_wrong.value = False
    assert len(rb.selection()) == len(load_json(proc / "split.json")["test"])
    rb.next.click()
    assert rb.index == 1 and "true:" in rb.text.value and "%" in rb.bars.value


def test_report_is_self_contained_and_shows_metrics(evaluated):
    _, images, proc = evaluated
    path = report.write(proc, images)
    page = path.read_text()
    metrics = load_json(proc / "metrics.json")
    assert f"{100 * metrics['overall_accuracy']:.2f}%" in page
    assert "src=\"http" not in page and "href=\"http" not in page  # everything inlined
    wrong = sum(1 for r in results.load_for(proc) if not r["correct"])
    assert page.count("<figure>") == wrong and page.count("data:image/jpeg;base64,") == wrong


def test_report_renders_in_headless_chromium(evaluated, chromium):
    from selenium.webdriver.common.by import By

    _, images, proc = evaluated
    path = report.write(proc, images)
    chromium.get(path.as_uri())
    summary = chromium.find_element(By.ID, "summary").text
    metrics = load_json(proc / "metrics.json")
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
