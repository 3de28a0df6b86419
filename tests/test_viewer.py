"""The web viewer: its HTTP API on a real server, and the page in headless Chromium."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import ARTIFACTS, browser_path

from audioscene.infer import Tagger
from audioscene.viewer import LOOPBACK_NAMES, ViewerConfig, allowed_hosts, create_app



@pytest.fixture(scope="module")
def viewer(tiny_run):
    """A live server on a free loopback port; thresholds 0 so that every class has an event bar."""
    import uvicorn

    tagger = Tagger.from_run(tiny_run, checkpoint="last", device="cpu")
    app = create_app(tagger, ViewerConfig(top_k=4, thresholds=0.0, max_upload_mb=1.0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the viewer did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def request(url, data=None, headers=None):
    """(status, body) of a GET, or a POST when `data` is given."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_only_the_served_host_is_answered(viewer):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends requests
    with `Host: evil.example`; they must not reach the API."""
    port = viewer.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        status, body = request(viewer + "/api/info", headers={"Host": host})
        assert status == 400 and b"labels" not in body, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert request(viewer + "/api/info", headers={"Host": host})[0] == 200
    assert "my-box.lan" in allowed_hosts("0.0.0.0", ["my-box.lan"]) and "0.0.0.0" not in allowed_hosts("0.0.0.0")
    assert allowed_hosts("192.168.1.5") == sorted({"192.168.1.5", *LOOPBACK_NAMES})


def test_page_and_static_files_are_served(viewer):
    status, page = request(viewer + "/")
    assert status == 200 and b'<script src="/static/app.js">' in page and b"cdn" not in page.lower()
    for name in ("app.js", "style.css"):
        status, body = request(f"{viewer}/static/{name}")
        assert status == 200 and len(body) > 500
    status, info = request(viewer + "/api/info")
    info = json.loads(info)
    assert status == 200 and len(info["labels"]) == 10 and info["frame_hop"] == 0.32 and info["max_upload_mb"] == 1.0


def test_analyze_a_clip(viewer, tiny_data):
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    status, body = request(viewer + "/api/analyze", clip.read_bytes(), {"X-Filename": clip.name})
    assert status == 200, body
    result = json.loads(body)
    assert result["filename"] == clip.name and result["duration"] == 10.0
    scores = [t["score"] for t in result["tags"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert len(result["curves"]["times"]) == 32 and len(result["curves"]["series"]) == 3
    assert all(len(s["values"]) == 32 for s in result["curves"]["series"])
    assert {e["label"] for e in result["events"]} == set(json.loads(request(viewer + "/api/info")[1])["labels"])
    assert result["spectrogram"].startswith("data:image/png;base64,")


def test_bad_uploads_get_a_message_and_the_server_lives_on(viewer, tmp_path):
    status, body = request(viewer + "/api/analyze", b"this is not audio at all", {"X-Filename": "notes.txt"})
    assert status == 400 and "notes.txt is not an audio file" in json.loads(body)["error"]
    status, body = request(viewer + "/api/analyze", b"\0" * (2 * 1024 * 1024), {"X-Filename": "big.wav"})
    assert status == 413 and "limit is 1 MB" in json.loads(body)["error"]
    status, body = request(viewer + "/api/analyze", b"", {"X-Filename": "empty.wav"})
    assert status == 400 and "empty" in json.loads(body)["error"]
    assert request(viewer + "/api/info")[0] == 200


def test_page_in_headless_chromium(viewer, tiny_data, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = browser_path()
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[1]
    (tmp_path / "notes.txt").write_text("not audio")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(viewer + "/")
        page.wait_for_selector("#model-info:has-text('10 classes')")
        page.set_input_files("#file-input", str(clip))
        page.wait_for_selector("#tags li", timeout=60_000)
        assert page.locator("#tags li").count() == 4
        assert page.locator("#events-track .event").count() >= 10  # thresholds 0: every class, whole clip
        assert page.locator("#filename").inner_text() == clip.name
        assert page.evaluate("document.getElementById('spectrogram').naturalWidth") > 0
        assert page.evaluate("document.getElementById('player').src").startswith("blob:")
        page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)

        page.set_input_files("#file-input", str(tmp_path / "notes.txt"))
        page.wait_for_selector("#error:not([hidden])", timeout=60_000)
        assert "not an audio file" in page.locator("#error").inner_text()
        page.screenshot(path=str(ARTIFACTS / "viewer_error.png"))
        browser.close()
    assert errors == []


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "----audioscene-test") -> tuple[bytes, dict]:
    """A multipart/form-data body as `curl -F` builds it: (name, filename or None, content) per field."""
    body = b""
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_form_upload_is_read_as_its_file(viewer, tiny_data):
    """What `curl -F file=@clip.flac` and an HTML form send: the file field is the upload, under its
    own name; the same bytes as a raw body give the same answer."""
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[1]
    body, headers = multipart([("note", None, b"--not the boundary\r\n"), ("file", clip.name, clip.read_bytes())])
    status, answer = request(viewer + "/api/analyze", body, headers)
    assert status == 200, answer
    raw = json.loads(request(viewer + "/api/analyze", clip.read_bytes(), {"X-Filename": clip.name})[1])
    assert json.loads(answer) == raw
    status, answer = request(viewer + "/api/analyze", *multipart([("note", None, b"hello")]))
    assert status == 400 and "the form holds no file" in json.loads(answer)["error"]
    status, answer = request(viewer + "/api/analyze", *multipart([("file", "empty.wav", b"")]))
    assert status == 400 and "the form's file empty.wav is empty" in json.loads(answer)["error"]
    # `curl --data-binary @clip.flac` sends the raw file labelled as a URL-encoded form (urllib too)
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded", "X-Filename": clip.name}
    assert json.loads(request(viewer + "/api/analyze", clip.read_bytes(), urlencoded)[1]) == raw


def test_a_client_that_hangs_up_mid_upload_costs_one_log_line(viewer, caplog):
    import logging
    import socket

    host, port = viewer.rsplit("/", 1)[1].split(":")
    with caplog.at_level(logging.WARNING):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 500000\r\n"
                               "X-Filename: cut.wav\r\n\r\n".encode() + b"\0" * 1000)
        deadline = time.monotonic() + 20
        while "disconnected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in records] == ["upload of cut.wav: the client disconnected before sending it whole"]
    assert not any(r.exc_info for r in records) and request(viewer + "/api/info")[0] == 200
