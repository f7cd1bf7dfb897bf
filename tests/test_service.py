"""The web service: both request formats, every kind of bad input, the limits, the key, the refusal to serve
the network without one, and the upload page's markup; Flask's test client."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from libraries.images import ImageError, ImageTooLarge
from libraries.service import DEFAULT_MAX_IMAGES, create_app, exposure_refusal

from conftest import pattern_image
from service_helpers import export_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def client(model_dir):
    return create_app(model_dir, max_bytes=2_000_000, max_pixels=5_000_000).test_client()


def jpeg(index=1, size=96, kind="vertical") -> bytes:
    buffer = io.BytesIO()
    pattern_image(kind, index, size).save(buffer, "JPEG")
    return buffer.getvalue()


def as_json(data: bytes) -> dict:
    return {"input_df": [{"image base64 string": base64.b64encode(data).decode()}]}


def assert_error(response, status, text):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert text in body["error"], body
    return body


def test_original_json_format(client):
    response = client.post("/score", json=as_json(jpeg()))
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict)  # real JSON, not a JSON-encoded string
    assert set(body) == {"label", "score", "allScores", "rawScores", "executionTimeMs"}
    assert body["label"] in ("horizontal", "vertical") and body["score"] == max(body["allScores"].values())
    assert sum(body["allScores"].values()) == pytest.approx(1.0, abs=1e-5)  # probabilities
    assert all(0 <= p <= 1 for p in body["allScores"].values())
    assert body["executionTimeMs"] > 0


def test_multipart_upload_gives_the_same_scores(client):
    data = jpeg(3)
    from_json = client.post("/score", json=as_json(data)).get_json()
    from_form = client.post("/score", data={"image": (io.BytesIO(data), "x.jpg")}, content_type="multipart/form-data").get_json()
    assert from_form["allScores"] == from_json["allScores"]


def test_several_images_in_input_df(client):
    body = {"input_df": as_json(jpeg(1))["input_df"] + as_json(jpeg(2, kind="horizontal"))["input_df"]}
    answers = client.post("/score", json=body).get_json()
    assert isinstance(answers, list) and len(answers) == 2


def test_served_scores_equal_the_models_own(client, model_dir):
    import onnxruntime as ort

    from libraries.images import read_image
    from libraries.presets import eval_preprocess

    data = jpeg(5, size=150)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities, margins = session.run(["probabilities", "raw_scores"],
                                         {"input": eval_preprocess(read_image(data, min_size=64), 64)[None]})
    served = client.post("/score", json=as_json(data)).get_json()
    np.testing.assert_allclose([served["allScores"]["horizontal"], served["allScores"]["vertical"]], probabilities[0], rtol=1e-6)
    np.testing.assert_allclose([served["rawScores"]["horizontal"], served["rawScores"]["vertical"]], margins[0], rtol=1e-6)


@pytest.mark.parametrize("body, status, text", [
    (b'{"input_df": [', 400, "malformed JSON"),
    (b'[1, 2]', 400, 'expected {"input_df"'),
    (b'{"input_df": []}', 400, 'expected {"input_df"'),
    (b'{"input_df": [{"image": "abc"}]}', 400, 'has no string field "image base64 string"'),
    (b'{"input_df": [{"image base64 string": "***not base64***"}]}', 400, "not valid base64"),
    (json.dumps(as_json(b"plain text, not pixels")).encode(), 400, "not an image"),
    (json.dumps(as_json(b"")).encode(), 400, "empty file (0 bytes)"),
    (json.dumps(as_json(jpeg()[:400])).encode(), 400, "truncated"),
])
def test_bad_json_bodies_get_400(client, body, status, text):
    assert_error(client.post("/score", data=body, content_type="application/json"), status, text)


def test_multipart_without_image_field(client):
    response = client.post("/score", data={"file": (io.BytesIO(jpeg()), "x.jpg")}, content_type="multipart/form-data")
    assert_error(response, 400, "without a file field named 'image'")


def test_oversized_body_gets_413(client):
    response = client.post("/score", data=b"x" * 2_100_000, content_type="application/json")
    assert_error(response, 413, "larger than 2,000,000 bytes")


@pytest.mark.parametrize("side", [4000, 14000])  # above the app's max_pixels; above Pillow's own bomb limit
def test_decompression_bomb_gets_413(client, side):
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG", optimize=True)
    assert len(buffer.getvalue()) < 100_000
    assert_error(client.post("/score", json=as_json(buffer.getvalue())), 413, "decompression bomb")


@pytest.mark.parametrize("error, status", [
    (ImageError("input_df[0]", "has no pixels (0x0)"), 400),
    (ImageError("input_df[0]", "too many pixels, says the wording alone"), 400),  # the type decides, not the text
    (ImageTooLarge("input_df[0]", "refused as a decompression bomb"), 413),
])
def test_status_comes_from_the_error_type(model_dir, error, status):
    app = create_app(model_dir)

    def preprocess(data, name):
        raise error

    app.extensions["scorer"].preprocess = preprocess
    body = assert_error(app.test_client().post("/score", json=as_json(jpeg())), status, error.reason)
    assert body["error"] == str(error) and body["status"] == status


def test_too_many_images_get_413_before_any_is_decoded(client):
    assert DEFAULT_MAX_IMAGES == 16
    junk = {"image base64 string": "***not base64, never decoded***"}
    too_many = client.post("/score", json={"input_df": [junk] * 17})
    body = assert_error(too_many, 413, "above the limit of 16 (MAX_IMAGES)")
    assert body["status"] == 413 and body["error"].startswith("17 images")
    uploads = {"image": [(io.BytesIO(b"not an image either"), f"{i}.jpg") for i in range(17)]}
    assert_error(client.post("/score", data=uploads, content_type="multipart/form-data"), 413, "limit of 16")
    answers = client.post("/score", json={"input_df": as_json(jpeg())["input_df"] * 16}).get_json()
    assert isinstance(answers, list) and len(answers) == 16  # the limit itself is allowed


def test_max_images_is_a_setting(model_dir):
    small = create_app(model_dir, max_images=2).test_client()
    assert_error(small.post("/score", json={"input_df": as_json(jpeg())["input_df"] * 3}), 413, "above the limit of 2")
    files = {"image": [(io.BytesIO(jpeg(1)), "a.jpg"), (io.BytesIO(jpeg(2, kind="horizontal")), "b.jpg")]}
    answers = small.post("/score", data=files, content_type="multipart/form-data").get_json()
    assert isinstance(answers, list) and len(answers) == 2  # several uploads named 'image': one answer each


def test_wrong_content_type_method_and_path(client):
    assert_error(client.post("/score", data=b"abc", content_type="text/plain"), 415, "unsupported content type 'text/plain'")
    assert_error(client.get("/score"), 405, "method GET not allowed")
    assert_error(client.get("/nowhere"), 404, "")


def test_still_serving_after_bad_requests(client):
    client.post("/score", data=b"{", content_type="application/json")
    assert client.post("/score", json=as_json(jpeg())).status_code == 200


def test_health_and_upload_page(client):
    health = client.get("/health").get_json()
    assert health["status"] == "ok" and health["labels"] == ["horizontal", "vertical"] and health["auth"] is False
    page = client.get("/").get_data(as_text=True)
    assert "<form" in page and 'type="file"' in page
    assert "http://" not in page and "https://" not in page  # no external assets
    # what the service answers reaches the page only as text, and bars are probabilities, not rescaled scores
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    assert "probability" in page and "Math.min(0, ...values)" not in page


def test_the_service_says_which_model_it_loaded(model_dir, monkeypatch, capsys):
    from libraries.service import app_from_env

    for name, value in {"MODEL_DIR": str(model_dir), "MAX_IMAGES": "3", "API_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    client = app_from_env().test_client()
    line = capsys.readouterr().err.strip()
    assert "loaded model" in line and str(model_dir) in line and "model.onnx" in line, line
    assert "classifier svm" in line and "'horizontal', 'vertical'" in line and "64 px" in line, line
    assert_error(client.post("/score", json={"input_df": as_json(jpeg())["input_df"] * 4}), 413, "limit of 3")


@pytest.mark.parametrize("addresses, environ, refused", [
    ([("0.0.0.0", 5000)], {}, True),
    ([("::", 5000)], {"API_KEY": ""}, True),
    ([("10.1.2.3", 80), ("127.0.0.1", 5000)], {"ALLOW_ANONYMOUS": "yes"}, True),  # only "1" says it on purpose
    ([("example.org", 5000)], {}, True),  # a name may resolve to anything
    ([("0.0.0.0", 5000)], {"API_KEY": "s3cret"}, False),
    ([("0.0.0.0", 5000)], {"ALLOW_ANONYMOUS": "1"}, False),
    ([("127.0.0.1", 5000), ("::1", 5000), ("localhost", 5000)], {}, False),  # make serve: this machine only
    (["/run/service.sock"], {}, False),  # a Unix socket
])
def test_exposure_refusal(addresses, environ, refused):
    message = exposure_refusal(addresses, environ)
    assert (message is not None) == refused
    if refused:
        assert "refusing to start" in message and "API_KEY" in message and "ALLOW_ANONYMOUS=1" in message
        assert "\n" not in message and str(addresses[0][1]) in message


def test_bearer_key(model_dir):
    client = create_app(model_dir, api_key="s3cret").test_client()
    body = as_json(jpeg())
    assert_error(client.post("/score", json=body), 401, "missing or wrong API key")
    response = client.post("/score", json=body, headers={"Authorization": "Bearer wrong"})
    assert_error(response, 401, "wrong API key")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200  # liveness needs no key


def test_missing_model_is_one_clear_sentence(tmp_path):
    from libraries.errors import MissingArtifact

    with pytest.raises(MissingArtifact, match="model.onnx does not exist: run scripts 1-5"):
        create_app(tmp_path)


def test_the_service_refuses_a_bundle_whose_labels_and_outputs_disagree(model_dir, tmp_path, monkeypatch, capsys):
    """As after adding a class and rerunning only part of the pipeline: 3 labels beside a 2-output model. The
    service stops at start with one line; it never answers with a wrong label."""
    from libraries import service
    from libraries.artifacts import file_digest

    for name in ("model.onnx", "deploy.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "labels.json").write_text('["horizontal", "vertical", "poly_ok"]')
    meta = json.loads((tmp_path / "deploy.json").read_text())
    meta["labels_digest"] = file_digest(tmp_path / "labels.json")
    (tmp_path / "deploy.json").write_text(json.dumps(meta))
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        service.app_from_env()
    assert stopped.value.code == service.WORKER_BOOT_ERROR
    err = capsys.readouterr().err
    assert "error: " in err and "model.onnx has 2 outputs but labels.json names 3 labels" in err and "Traceback" not in err


def test_service_modules_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys; import libraries.service; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
