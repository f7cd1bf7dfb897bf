"""The web service: both request formats, every kind of bad input, and the key; Flask's test client."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from libraries.service import create_app

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
    assert set(body) == {"label", "score", "allScores", "executionTimeMs"}
    assert body["label"] in ("horizontal", "vertical") and body["score"] == max(body["allScores"].values())
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
    direct = session.run(None, {"input": eval_preprocess(read_image(data, min_size=64), 64)[None]})[0][0]
    served = client.post("/score", json=as_json(data)).get_json()["allScores"]
    np.testing.assert_allclose([served["horizontal"], served["vertical"]], direct, rtol=1e-6)


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


def test_decompression_bomb_gets_413(client):
    buffer = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buffer, "PNG", optimize=True)
    assert len(buffer.getvalue()) < 100_000
    assert_error(client.post("/score", json=as_json(buffer.getvalue())), 413, "decompression bomb")


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
    with pytest.raises(FileNotFoundError, match="model.onnx does not exist: run scripts 1-5"):
        create_app(tmp_path)


def test_service_modules_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys; import libraries.service; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
