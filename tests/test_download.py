"""Downloads against a local HTTP server on 127.0.0.1 that the test runs: never a website."""
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from libraries import download
from libraries.images import read_image

from conftest import pattern_image, run_script


def jpeg_bytes(kind="vertical", index=0, size=64):
    buffer = io.BytesIO()
    pattern_image(kind, index, size).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    big = io.BytesIO()
    pattern_image("checker", 9, 1500).save(big, "PNG")
    routes = {
        "/a.jpg": (200, jpeg_bytes("vertical", 1)),
        "/b.jpg": (200, jpeg_bytes("horizontal", 2)),
        "/a_copy.jpg": (200, jpeg_bytes("vertical", 1)),
        "/big.png": (200, big.getvalue()),
        "/text.jpg": (200, b"<html>not an image</html>"),
        "/truncated.jpg": (200, jpeg_bytes("vertical", 3)[:300]),
        "/flaky.jpg": (500, b""),
    }
    hits = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            status, body = routes.get(self.path, (404, b"no"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.jpg"


@pytest.mark.parametrize("label", ["../x", "/etc", "a/b", "..", ".hidden", "", "a\\b"])
def test_labels_that_escape_are_refused(label):
    with pytest.raises(ValueError, match="would escape"):
        download.check_label(label)


def test_read_url_list_reports_bad_lines(tmp_path):
    tsv = tmp_path / "urls.tsv"
    tsv.write_text("dotted\thttp://x/1.jpg\n../evil\thttp://x/2.jpg\nno tab here\nstriped\tftp://x/3.jpg\n\n")
    items, problems = download.read_url_list(tsv)
    assert items == [("dotted", "http://x/1.jpg")]
    assert len(problems) == 3 and "urls.tsv:2" in problems[0] and "would escape" in problems[0]


def test_download_all_sorts_outcomes(tmp_path, server):
    base, hits = server
    items = [("a", f"{base}/a.jpg"), ("b", f"{base}/b.jpg"), ("a", f"{base}/big.png"), ("a", f"{base}/missing.jpg"),
             ("b", f"{base}/text.jpg"), ("b", f"{base}/truncated.jpg"), ("b", f"{base}/flaky.jpg"), ("a", closed_port_url())]
    results = download.download_all(items, tmp_path, workers=4, timeout=5, retries=2, max_side=200, progress=False)
    by_url = {r.url.rsplit("/", 1)[1]: r for r in results}
    assert by_url["a.jpg"].status == "downloaded" and by_url["big.png"].status == "downloaded"
    assert by_url["missing.jpg"].reason == "HTTP 404"
    assert by_url["text.jpg"].reason == "not a usable image"
    assert by_url["truncated.jpg"].reason == "not a usable image"
    assert by_url["flaky.jpg"].status == "failed" and hits["/flaky.jpg"] == 3  # first try + 2 retries
    assert by_url["gone.jpg"].reason.startswith("connection error")
    big = read_image(by_url["big.png"].path)
    assert max(big.shape[:2]) == 200  # shrunk to the longest side
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []  # nothing partial or temporary left behind
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [download.file_name_for(f"{base}/b.jpg")]
    summary = download.summarize(results)
    assert "downloaded: 3, skipped (already there): 0, failed: 5" in summary
    again = download.download_all(items[:2], tmp_path, workers=2, progress=False)
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_near_duplicates_are_removed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pattern_image("vertical", 1, 64).save(tmp_path / "a" / "1.png")
    pattern_image("vertical", 1, 64).save(tmp_path / "b" / "1_copy.jpg", quality=90)
    pattern_image("horizontal", 2, 64).save(tmp_path / "b" / "2.png")
    removed = download.remove_near_duplicates(tmp_path, max_distance=8)
    assert [p.name for p in removed] == ["1_copy.jpg"]
    assert (tmp_path / "a" / "1.png").exists() and (tmp_path / "b" / "2.png").exists()


def test_script0_end_to_end_with_report(tmp_path, server):
    base, _ = server
    tsv = tmp_path / "urls.tsv"
    tsv.write_text(f"dotted\t{base}/a.jpg\ndotted\t{base}/a_copy.jpg\nstriped\t{base}/b.jpg\n"
                   f"striped\t{base}/missing.jpg\n../escape\t{base}/a.jpg\n")
    result = run_script("0_downloadData.py", tmp_path / "data", "datasetName=web", f"dl_urlsFile='{tsv}'",
                        "dl_boRemoveDuplicates=True", "dl_maxRetries=0")
    assert "downloaded: 3, skipped (already there): 0, failed: 1" in result.stdout
    assert "failed, HTTP 404: 1" in result.stdout and "near-duplicates removed: 1" in result.stdout
    assert "would escape" in result.stderr
    report = (tmp_path / "data" / "proc" / "web" / "download_report.tsv").read_text()
    assert "failed\tHTTP 404\tstriped" in report
    images = sorted(p.relative_to(tmp_path / "data" / "images" / "web").as_posix()
                    for p in (tmp_path / "data" / "images" / "web").rglob("*.jpg"))
    assert len(images) == 2 and not (tmp_path / "data" / "escape").exists()


def test_script0_dead_urls_give_clean_report_and_exit_code(tmp_path):
    tsv = tmp_path / "urls.tsv"
    tsv.write_text(f"dotted\t{closed_port_url()}\nstriped\t{closed_port_url()}\n")
    result = run_script("0_downloadData.py", tmp_path / "data", "datasetName=dead", f"dl_urlsFile='{tsv}'",
                        "dl_maxRetries=0", check=False)
    assert result.returncode == 1
    assert "failed, connection error (dead host or no network): 2" in result.stdout
    assert "error: no image could be downloaded" in result.stderr and "Traceback" not in result.stderr
