"""The service as deployed: gunicorn on 127.0.0.1 as `make serve` starts it, a bounded load test, slow clients,
the upload page in headless Chromium, script 6, the container's entry command (without Docker), and the
container's requirements in a fresh venv."""
import base64
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import time
import venv

import pytest
import requests

from conftest import REPO, pattern_image, run_script
from service_helpers import Gunicorn, PartialRequests, dockerfile, export_tiny_model, free_port, rss_kib

from libraries.service import wait_for_health


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


def test_slow_clients_do_not_delay_normal_calls(server, image_file):
    """50 connections stuck in their request header (and 10 in their body) must not hold up anyone else, and
    are dropped within seconds (aml_config/gunicorn.conf.py: keepalive 5 s, BODY_TIMEOUT 10 s)."""
    body = {"input_df": [{"image base64 string": base64.b64encode(image_file.read_bytes()).decode()}]}
    requests.post(server.url + "/score", json=body, timeout=30)  # warm-up
    with PartialRequests(server.port, 50) as slow, PartialRequests(server.port, 10, body=True) as slow_body:
        time.sleep(0.5)  # the workers have accepted them and wait for the rest
        latencies = []
        for _ in range(20):
            start = time.perf_counter()
            response = requests.post(server.url + "/score", json=body, timeout=5)  # a new connection each
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200 and "label" in response.json()
        assert max(latencies) < 1.0, f"normal calls took up to {max(latencies):.2f} s while 50 slow clients waited"
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
        assert slow.still_open() == 50 and slow_body.still_open() == 10  # held all along, not refused
        deadline = time.monotonic() + 20
        while (slow.still_open() or slow_body.still_open()) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert slow.still_open() == 0, "clients that never finish their request header are not dropped"
        assert slow_body.still_open() == 0, "clients that never finish their request body are not dropped"
        assert {answer[:12] for answer in slow_body.answers()} == {b"HTTP/1.1 408"}

    many = {"input_df": [{"image base64 string": "bm90IGFuIGltYWdl"}] * 17}  # 17 "not an image": never decoded
    response = requests.post(server.url + "/score", json=many, timeout=5)
    assert response.status_code == 413 and response.json()["status"] == 413
    assert "above the limit of 16 (MAX_IMAGES)" in response.json()["error"]


def test_each_worker_says_which_model_it_loaded(server):
    lines = [line for line in server.log().splitlines() if "loaded model" in line]
    assert len(lines) == 2, server.log()  # one per worker
    assert all("model.onnx: classifier svm" in line and "'horizontal', 'vertical'" in line for line in lines)


def test_script6_calls_the_running_service(server, image_file, tmp_path):
    result = run_script("6_callWebservice.py", tmp_path, extra=["--url", server.url + "/score", "-n", "3", str(image_file)])
    assert "label: vertical" in result.stdout or "label: horizontal" in result.stdout
    assert "server time:" in result.stdout and "p50" in result.stdout and "p99" in result.stdout


def test_script6_unreachable_service_is_one_sentence(tmp_path, image_file):
    result = run_script("6_callWebservice.py", tmp_path, check=False,
                        extra=["--url", f"http://127.0.0.1:{free_port()}/score", "-n", "1", str(image_file)])
    assert result.returncode == 1 and "is the service running?" in result.stderr and "Traceback" not in result.stderr


HOSTILE_LABEL = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_upload_page_in_headless_chromium(image_file, chromium, tmp_path):
    """A label full of markup shows as text, and each bar's width is its class's probability."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    labels = [HOSTILE_LABEL, "vertical"]
    server = Gunicorn(export_tiny_model(tmp_path / "model", labels=labels), workers=1)
    try:
        expected = requests.post(server.url + "/score", files={"image": image_file.open("rb")}, timeout=30).json()
        chromium.get(server.url + "/")
        chromium.find_element(By.ID, "file").send_keys(str(image_file))
        chromium.find_element(By.ID, "submit").click()
        WebDriverWait(chromium, 30).until(lambda d: d.find_element(By.ID, "label").text.strip() != "")
    finally:
        server.stop()
    assert chromium.find_element(By.ID, "label").text == expected["label"]
    assert chromium.find_element(By.ID, "error").text == ""
    with pytest.raises(NoAlertPresentException):
        chromium.switch_to.alert.text
    assert chromium.find_elements(By.CSS_SELECTOR, "#bars script, #bars img, #label script") == []
    assert f"probability {100 * expected['score']:.1f}%" in chromium.find_element(By.ID, "score").text
    rows = chromium.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [row.find_element(By.TAG_NAME, "span").text for row in rows] == labels
    for row, label in zip(rows, labels):
        probability = expected["allScores"][label]
        track, fill = row.find_element(By.CSS_SELECTOR, ".track"), row.find_element(By.CSS_SELECTOR, ".fill")
        assert fill.size["width"] / track.size["width"] == pytest.approx(probability, abs=0.01)
        assert row.find_element(By.TAG_NAME, "code").text == f"{100 * probability:.1f}%"


def container_layout(root):
    """The image's files as aml_config/Dockerfile copies them, under ``root`` (for /), without the model; and the
    Dockerfile's ENV and CMD."""
    copies, env, cmd = dockerfile(REPO / "aml_config" / "Dockerfile")
    for source, dest in copies:
        if dest.startswith("/app/"):
            (root / dest[1:]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / source, root / dest[1:])
    return root / "app", env, cmd


# builds the app as the container does, then lists the project's modules it took from outside the image's /app
IMPORTED_FROM_OUTSIDE = """
import os, sys
app = sys.argv[1]
sys.path[:0] = [app, os.path.join(app, "scripts")]
os.environ["MODEL_DIR"] = sys.argv[2]
import deploymain
deploymain.make_app()
print([f"{name} from {module.__file__}" for name, module in list(sys.modules.items())
       if name.split(".")[0] in ("libraries", "deploymain") and not (module.__file__ or "").startswith(app)])
"""


def test_dockerfile_copies_what_the_service_imports(tmp_path):
    """Every module of this repository that the service imports is copied into the image (the Dockerfile's COPY
    lines are the list: add a module there and this test, the container-entry and fresh-venv tests follow)."""
    copies, env, cmd = dockerfile(REPO / "aml_config" / "Dockerfile")
    copied = {source for source, _ in copies}
    for path in ["aml_config/requirements-service.txt", "aml_config/gunicorn.conf.py", "scripts/deploymain.py",
                 "libraries/__init__.py", "libraries/service.py"]:
        assert path in copied, path
    app, _, _ = container_layout(tmp_path / "root")
    result = subprocess.run([sys.executable, "-I", "-c", IMPORTED_FROM_OUTSIDE, str(app),
                             str(export_tiny_model(tmp_path / "model"))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", f"not copied into the image: {result.stdout}"
    dockerfile_text = (REPO / "aml_config" / "Dockerfile").read_text()
    assert "USER app" in dockerfile_text and "HEALTHCHECK" in dockerfile_text
    assert "torch" not in dockerfile_text.split("FROM", 1)[1]
    assert cmd[:3] == ["gunicorn", "-c", "/app/aml_config/gunicorn.conf.py"] and env["HOST"] == "0.0.0.0"


def container_entry(tmp_path, **env_extra):
    """The Dockerfile's CMD with its ENV, run here (no Docker) on its copied files, a tiny model and a free port."""
    app, env, cmd = container_layout(tmp_path / "root")
    env = {**env, "MODEL_DIR": str(export_tiny_model(tmp_path / "model")), "PYTHONPATH": str(app),
           "PORT": str(free_port()), "SCORE_THREADS": "1", "PATH": os.environ["PATH"], **env_extra}
    command = [sys.executable, "-m", "gunicorn"] + [a.replace("/app/", f"{app}/") for a in cmd[1:]]
    assert cmd[0] == "gunicorn"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, int(env["PORT"])


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_container_refuses_to_start_without_an_api_key(tmp_path):
    process, port = container_entry(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            assert not answers(port), "the container listened without API_KEY"
            time.sleep(0.1)
        assert process.poll() is not None, "the container kept running without API_KEY"
    finally:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode != 0
    refusals = [line for line in stderr.splitlines() if "refusing to start" in line]
    assert len(refusals) == 1 and "0.0.0.0" in refusals[0] and "ALLOW_ANONYMOUS=1" in refusals[0], stderr
    assert "Traceback" not in stderr and "Booting worker" not in stderr and "loaded model" not in stderr, stderr


@pytest.mark.parametrize("env_extra", [{"ALLOW_ANONYMOUS": "1"}, {"API_KEY": "s3cret"}])
def test_container_starts_with_an_api_key_or_allow_anonymous(tmp_path, env_extra):
    process, port = container_entry(tmp_path, **env_extra)  # listens on 0.0.0.0: stopped as soon as it answers
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", 60), "the container did not start"
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    assert "refusing to start" not in stderr and "loaded model" in stderr


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
    app, _, _ = container_layout(tmp_path / "root")  # the image's /app
    model_dir = export_tiny_model(tmp_path / "model")
    gunicorn = Gunicorn(model_dir, workers=1, python_bin=python, pythonpath=str(app))
    try:
        answer = requests.post(gunicorn.url + "/score", files={"image": image_file.open("rb")}, timeout=30).json()
        assert answer["label"] in ("horizontal", "vertical")
    finally:
        gunicorn.stop()


def test_serving_a_stale_bundle_stops_with_one_line(tmp_path):
    """As `make serve` starts it: a bundle whose labels.json is from another run never serves; the master says why
    in one line, before any worker starts."""
    import os

    from service_helpers import free_port

    from libraries.service import gunicorn_command

    model_dir = export_tiny_model(tmp_path / "model")
    (model_dir / "labels.json").write_text('["horizontal", "vertical", "poly_ok"]')
    env = {**os.environ, "MODEL_DIR": str(model_dir)}
    env.pop("API_KEY", None)
    done = subprocess.run(gunicorn_command(free_port(), 2), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "labels.json is not the file deploy.json was written with" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr, done.stderr
