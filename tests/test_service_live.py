"""The service as deployed: gunicorn on 127.0.0.1, a bounded load test, the upload page in headless Chromium,
script 6, and the container's requirements in a fresh venv."""
import base64
import concurrent.futures
import shutil
import subprocess
import time
import venv

import pytest
import requests

from conftest import REPO, pattern_image, run_script
from service_helpers import Gunicorn, export_tiny_model, rss_kib


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = export_tiny_model(tmp_path_factory.mktemp("model"))
    gunicorn = Gunicorn(model_dir, workers=2)
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "stripes.jpg"
    pattern_image("vertical", 3, 120).save(path, "JPEG")
    return path


def test_bounded_load_has_no_errors_and_no_memory_growth(server, image_file):
    body = {"input_df": [{"image base64 string": base64.b64encode(image_file.read_bytes()).decode()}]}
    bad = b'{"input_df": [{"image base64 string": "bm90IGFuIGltYWdl"}]}'  # "not an image"

    def client(n_requests, deadline):
        session, errors, done = requests.Session(), [], 0
        for i in range(n_requests):
            if time.monotonic() > deadline:
                break
            if i % 10 == 9:  # bad requests mixed in must not hurt the good ones
                r = session.post(server.url + "/score", data=bad, headers={"Content-Type": "application/json"}, timeout=30)
                if r.status_code != 400:
                    errors.append(f"bad request answered {r.status_code}")
            else:
                r = session.post(server.url + "/score", json=body, timeout=30)
                if r.status_code != 200 or "label" not in r.json():
                    errors.append(f"{r.status_code}: {r.text[:100]}")
            done += 1
        return done, errors

    client(20, time.monotonic() + 60)  # warm-up, then measure memory
    before = {pid: rss_kib(pid) for pid in server.worker_pids()}
    deadline = time.monotonic() + 90
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: client(100, deadline), range(4)))
    after = {pid: rss_kib(pid) for pid in server.worker_pids()}
    done = sum(r[0] for r in results)
    errors = [e for r in results for e in r[1]]
    assert done >= 100, f"only {done} requests finished in the time bound"
    assert errors == []
    assert set(after) == set(before), "a worker died and was replaced"
    growth_mib = max(after[pid] - before[pid] for pid in before) / 1024
    assert growth_mib < 50, f"a worker grew by {growth_mib:.1f} MiB over {done} requests"


def test_script6_calls_the_running_service(server, image_file, tmp_path):
    result = run_script("6_callWebservice.py", tmp_path, extra=["--url", server.url + "/score", "-n", "3", str(image_file)])
    assert "label: vertical" in result.stdout or "label: horizontal" in result.stdout
    assert "server time:" in result.stdout and "p50" in result.stdout and "p99" in result.stdout


def test_script6_unreachable_service_is_one_sentence(tmp_path, image_file):
    from service_helpers import free_port

    result = run_script("6_callWebservice.py", tmp_path, check=False,
                        extra=["--url", f"http://127.0.0.1:{free_port()}/score", "-n", "1", str(image_file)])
    assert result.returncode == 1 and "is the service running?" in result.stderr and "Traceback" not in result.stderr


def test_upload_page_in_headless_chromium(server, image_file, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = requests.post(server.url + "/score", files={"image": image_file.open("rb")}).json()["label"]
    chromium.get(server.url + "/")
    chromium.find_element(By.ID, "file").send_keys(str(image_file))
    chromium.find_element(By.ID, "submit").click()
    WebDriverWait(chromium, 30).until(lambda d: d.find_element(By.ID, "label").text.strip() != "")
    assert chromium.find_element(By.ID, "label").text == expected
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 2
    assert chromium.find_element(By.ID, "error").text == ""


# what aml_config/Dockerfile copies into the image, besides the model
SERVICE_FILES = ["libraries/__init__.py", "libraries/images.py", "libraries/presets.py", "libraries/service.py",
                 "scripts/deploymain.py"]


@pytest.mark.slow
def test_container_requirements_install_in_a_fresh_venv_and_serve(tmp_path, image_file):
    """The image's requirements and its copied files alone are enough to serve, and hold no torch."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(REPO / "aml_config" / "requirements-service.txt")],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    app = tmp_path / "app"  # laid out as the image's /app
    for rel in SERVICE_FILES:
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, app / rel)
    model_dir = export_tiny_model(tmp_path / "model")
    gunicorn = Gunicorn(model_dir, workers=1, python_bin=python, pythonpath=str(app))
    try:
        answer = requests.post(gunicorn.url + "/score", files={"image": image_file.open("rb")}, timeout=30).json()
        assert answer["label"] in ("horizontal", "vertical")
    finally:
        gunicorn.stop()


def test_dockerfile_copies_what_the_service_imports():
    dockerfile = (REPO / "aml_config" / "Dockerfile").read_text()
    for path in SERVICE_FILES + ["aml_config/requirements-service.txt"]:
        assert path in dockerfile, path
        assert (REPO / path).is_file()
    assert "USER app" in dockerfile and "HEALTHCHECK" in dockerfile and "torch" not in dockerfile.split("FROM", 1)[1]
