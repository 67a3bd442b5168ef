"""Tests for the live page's server (core/serve/): its JSON API, its files and its refusals.

The server runs in a thread on a free port (port 0) with the shipped model; the pictures
are real MNIST test digits, saved as PNG files the way a user would draw them.
"""

import base64
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import main
from core.learn.eval import predict_proba
from core.report import check_digit_model, model_inputs
from core.serve.live import LivePage
from core.serve.pictures import GAP_INDEX, mosaic, picture_bytes
from core.serve.server import MAX_BODY, STATIC, LiveServer
from data import load_dataset
from data.digit_image import load_digit_image
from data.errors import UserError
from model.params_io import load_model
from model.shapes import trace_shapes
from model.summary import format_summary
from tests.hostile_pictures import HOSTILE

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "best_params.npz"


@pytest.fixture(scope="module")
def served():
    """(server, log lines) of a live server on a free port, serving the shipped model."""
    lines = []
    server = LiveServer(("127.0.0.1", 0), LivePage(SHIPPED), log=lines.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, lines
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def digits():
    """The first 20 MNIST test images (20, 28, 28) uint8 and their labels."""
    ds = load_dataset("mnist")
    return ds.x_test[:20, 0], ds.y_test[:20]


def drawn(digit, path):
    """Save an MNIST digit as a drawing: black ink on white, 10 times larger, as a PNG."""
    picture = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
    picture.save(path)
    return path


def data_url(path):
    """The file at ``path`` as a PNG data URL, as the page sends it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def request(server, method, path, body=None, headers=None):
    """(status, headers, parsed JSON or raw bytes) of one request to ``server``."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, response, json.loads(data) if "json" in kind else data
    finally:
        connection.close()


def post_json(server, value):
    """POST /api/predict with ``value`` as its JSON body."""
    return request(server, "POST", "/api/predict", json.dumps(value).encode("utf-8"))


def test_a_drawing_gets_exactly_predicts_answer(served, digits, tmp_path, capsys):
    server, _ = served
    images, labels = digits
    path = drawn(images[0], tmp_path / "seven.png")
    status, _, answer = post_json(server, {"image": data_url(path)})
    assert status == 200, answer

    # The very same preparation and probabilities as predict's, to the last bit.
    model = load_model(SHIPPED)
    prepared = load_digit_image(path)
    probs = predict_proba(
        model.params, model.blueprint, model_inputs(prepared[None, None], model.meta)
    )
    assert np.array_equal(np.array(answer["input"]["pixels"], dtype=np.uint8), prepared)
    assert np.array_equal(np.array(answer["probabilities"]), probs[0].astype(np.float64))
    assert answer["index"] == int(probs[0].argmax()) == labels[0]
    assert answer["class"] == answer["classes"][answer["index"]] == model.meta["class_names"][7]

    assert main.main(["predict", str(path)]) == 0
    printed = re.search(r": (\d)   top 3: ", capsys.readouterr().out)
    assert printed and printed.group(1) == answer["class"]


def test_every_layer_is_shown_with_its_summary_label(served, digits, tmp_path):
    server, _ = served
    status, _, answer = post_json(
        server, {"image": data_url(drawn(digits[0][1], tmp_path / "d.png"))}
    )
    assert status == 200, answer
    model = load_model(SHIPPED)
    rows = [r for r in trace_shapes(model.blueprint, (1, 28, 28)) if r.depth == 0]
    assert [layer["name"] for layer in answer["layers"]] == [r.label for r in rows]
    assert [tuple(layer["shape"]) for layer in answer["layers"]] == [r.out_shape for r in rows]
    for layer in answer["layers"]:
        picture = Image.open(io.BytesIO(picture_bytes(layer["png"])))
        rows_of_tiles, columns = layer["tiles"]
        assert (
            picture.format == "PNG" and picture.width >= columns and picture.height >= rows_of_tiles
        )
        assert layer["range"][0] <= layer["range"][1]
    saliency = Image.open(io.BytesIO(picture_bytes(answer["saliency"]["png"])))
    assert saliency.size == (28, 28) and answer["saliency"]["peak"] > 0
    prepared = Image.open(io.BytesIO(picture_bytes(answer["input"]["png"])))
    assert prepared.size == (28, 28) and prepared.mode == "L"


def test_the_model_tab_gets_the_blueprint_table_and_the_shipped_figures(served):
    server, _ = served
    status, _, model_tab = request(server, "GET", "/api/model")
    assert status == 200
    model = load_model(SHIPPED)
    assert model_tab["summary"] == format_summary(
        model.blueprint, (1, 28, 28), "best_params.npz", model.params
    )
    urls = {figure["url"] for figure in model_tab["figures"]}
    assert urls == {"/figures/history.png", "/figures/confusion_matrix.png"}
    for name in ("history.png", "confusion_matrix.png"):
        status, response, data = request(server, "GET", f"/figures/{name}")
        assert status == 200 and response.getheader("Content-Type") == "image/png"
        assert data == (ROOT / "plot" / name).read_bytes()


def test_a_run_folder_without_figures_gets_its_curves_drawn_from_log_csv(tmp_path):
    (tmp_path / "best_params.npz").write_bytes(SHIPPED.read_bytes())
    (tmp_path / "log.csv").write_text((ROOT / "plot" / "log.csv").read_text())
    live = LivePage(tmp_path / "best_params.npz")
    assert set(live.figures) == {"history.png"}
    assert live.figures["history.png"].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ],
)
def test_the_page_is_served_and_loads_nothing_from_the_internet(served, path, kind):
    status, response, data = request(served[0], "GET", path)
    assert status == 200 and response.getheader("Content-Type").startswith(kind)
    assert b"http:" not in data and b"https:" not in data
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")


BAD_BODIES = {
    "not JSON": b"hello",
    "not UTF-8": b"\xff\xfe{",
    "a JSON list": b"[1, 2]",
    "no image": b'{"picture": "x"}',
    "not a data URL": b'{"image": "/etc/passwd"}',
    "a number": b'{"image": 7}',
    "broken base64": b'{"image": "data:image/png;base64,AAA"}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_malformed_request_gets_400_and_one_json_error(served, body):
    status, _, answer = request(served[0], "POST", "/api/predict", body)
    assert status == 400 and isinstance(answer["error"], str) and "\n" not in answer["error"]


def picture_url(array, fmt="PNG"):
    """A data URL of the picture ``array`` (uint8) in format ``fmt``."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("data:image/png;base64," + base64.b64encode(b"plain text").decode(), "not an image"),
        ("data:image/png;base64,", "empty"),
        (picture_url(np.full((280, 280), 255, np.uint8)), "no digit found"),
        (picture_url(np.zeros((4, 4), np.uint8)), "too small"),
    ],
    ids=["text", "empty", "blank canvas", "tiny"],
)
def test_a_picture_predict_would_refuse_gets_predicts_message(served, image, problem):
    status, _, answer = post_json(served[0], {"image": image})
    assert status == 400 and problem in answer["error"] and "'the picture'" in answer["error"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_picture_gets_400_and_its_one_line_refusal(served, name):
    data, problem = HOSTILE[name]
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    status, _, answer = post_json(served[0], {"image": url})
    assert status == 400, answer
    assert re.search(f"'the picture': .*{problem}", answer["error"]), answer["error"]
    assert answer["error"].isprintable()


def raw_request(server, head, body=b""):
    """Send ``head`` (request line and headers, without the blank line) and ``body``."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.putrequest(*head[0])
        for name, value in head[1:]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_huge_body_is_refused_from_its_length_before_it_is_sent(served):
    status, answer = raw_request(
        served[0], [("POST", "/api/predict"), ("Content-Length", str(100 * MAX_BODY))]
    )
    assert status == 413 and "limit" in answer["error"]


@pytest.mark.parametrize(
    ("length", "status"), [(None, 411), ("-1", 400), ("ten", 400), ("1" * 40, 400)]
)
def test_a_missing_or_invalid_length_is_refused(served, length, status):
    head = [("POST", "/api/predict")] + ([] if length is None else [("Content-Length", length)])
    got, answer = raw_request(served[0], head)
    assert got == status and answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/predict", 405),
        ("PUT", "/api/predict", 405),
        ("DELETE", "/", 405),
        ("POST", "/api/model", 405),
        ("GET", "/nowhere", 404),
        ("GET", "/figures/../main.py", 404),
        ("GET", "/figures/log.csv", 404),
        ("GET", "/main.py", 404),
    ],
)
def test_wrong_methods_and_unknown_paths(served, method, path, status):
    got, response, answer = request(served[0], method, path, b"{}" if method != "GET" else None)
    assert got == status and answer["error"]
    if status == 405:
        assert response.getheader("Allow") in ("GET, HEAD", "POST")


def test_a_client_that_hangs_up_mid_body_costs_one_log_line(served, digits, tmp_path):
    server, lines = served
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", "100000")
    connection.endheaders(b'{"image": "data:')
    connection.close()
    # The server is still there for the next client.
    path = drawn(digits[0][2], tmp_path / "next.png")
    status, _, answer = post_json(server, {"image": data_url(path)})
    assert status == 200 and answer["index"] == digits[1][2]
    assert all("\n" not in line and "Traceback" not in line for line in lines)


def test_fifty_concurrent_clients_good_and_bad_all_get_their_answer(
    served, digits, tmp_path, capfd
):
    server, lines = served
    images, labels = digits
    paths = [drawn(images[i], tmp_path / f"{i}.png") for i in range(10)]
    jobs = [(i % 10, i % 2 == 0) for i in range(50)]  # (digit, good request?)

    def ask(job):
        digit, good = job
        if good:
            return post_json(server, {"image": data_url(paths[digit])})
        return request(server, "POST", "/api/predict", b"not json at all")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, jobs))
    for (digit, good), (status, _, answer) in zip(jobs, answers, strict=True):
        if good:
            assert status == 200 and answer["index"] == labels[digit], answer.get("error")
        else:
            assert status == 400 and answer["error"]
    assert "Traceback" not in capfd.readouterr().err
    assert all("\n" not in line for line in lines)


def test_serve_refuses_a_model_that_is_not_a_digit_classifier():
    digits_8x8 = SimpleNamespace(meta={"input_shape": [1, 8, 8], "dataset": "digits"})
    with pytest.raises(UserError, match="takes \\[1, 8, 8\\] inputs.*1x28x28 digit images"):
        check_digit_model(digits_8x8.meta, "small.npz", "serve")
    regression = SimpleNamespace(
        meta={"input_shape": [1], "dataset": "line", "config": {"loss": "mse"}}
    )
    with pytest.raises(UserError, match="regression model"):
        check_digit_model(regression.meta, "line.npz", "serve")


def test_serve_with_a_missing_model_file_is_one_line(tmp_path, capsys):
    assert main.main(["serve", "--params", str(tmp_path / "none.npz"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.npz" in err


def test_the_command_prints_its_address_and_ctrl_c_stops_it_cleanly():
    process = subprocess.Popen(
        [sys.executable, "main.py", "serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", first)
        assert url, first
        connection = http.client.HTTPConnection("127.0.0.1", int(url.group(2)), timeout=60)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped" in out and "Traceback" not in err


def test_mosaic_tiles_a_layers_channels_on_one_scale():
    maps = np.arange(10 * 3 * 2, dtype=np.float32).reshape(10, 3, 2)
    grid, tiles, (low, high) = mosaic(maps)
    assert tiles == (2, 8) and (low, high) == (0.0, 59.0)
    assert grid.shape == (2 * 3 + 1, 8 * 2 + 7)
    assert grid[0, 0] == 0 and grid[4 + 2, 3 + 1] == 254  # first and last channel's last pixel
    assert grid[3, 0] == GAP_INDEX  # the row between the tiles
    vector, tiles, _ = mosaic(np.ones(70))  # a near-square block of 8 rows of 9, not a strip
    assert tiles == (8, 9) and vector.shape == (8, 9)
    assert vector[7, 6] != GAP_INDEX and vector[7, 7] == GAP_INDEX  # 70 units, then the gap


def test_static_files_are_the_three_the_server_names():
    assert sorted(p.name for p in STATIC.iterdir()) == ["app.js", "index.html", "style.css"]


def test_serve_help_names_its_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main.main(["serve", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert all(option in shown for option in ("--params", "--port", "--host"))


def raw_exchange(served, data):
    """(status, headers {lower-case name: value}, parsed JSON body, new log lines) of ``data``.

    ``served`` is the fixture's (server, log lines). ``data`` is sent as it is over a fresh
    socket and the answer read until the server closes the connection: an answer without
    a status line fails here.
    """
    server, lines = served
    before = len(lines)
    with socket.create_connection(server.server_address[:2], timeout=60) as connection:
        connection.sendall(data)
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("iso-8859-1").split("\r\n")
    found = re.fullmatch(r"HTTP/1\.[01] (\d{3}) .+", status_line)
    assert found, answer[:200]
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(found.group(1)), headers, json.loads(body), lines[before:]


FRAMING = {
    "garbage": (b"GARBAGE\r\n\r\n", 400, "Bad request syntax"),
    "HTTP/0.9": (b"GET /\r\n", 505, "HTTP/0.9 is not supported"),
    "HTTP/0.9 POST": (b"POST /api/predict\r\n\r\n", 505, "HTTP/0.9 is not supported"),
    "a 64 KiB line": (b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n\r\n", 414, "Too Long"),
    "HTTP/9.9": (b"GET / HTTP/9.9\r\n\r\n", 505, "Invalid HTTP version"),
    "HTTP/1.x": (b"GET / HTTP/1.x\r\n\r\n", 400, "Bad request version"),
    "unknown method": (b"BREW /pot HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
    "two lengths": (
        b"POST /api/predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{}",
        400,
        "2 Content-Length headers",
    ),
    "the same length twice": (
        b"POST /api/predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "2 Content-Length headers",
    ),
    "a negative length": (
        b"GET / HTTP/1.1\r\nContent-Length: -2\r\n\r\n{}",
        400,
        "bad Content-Length",
    ),
    "a length list": (
        b"POST /api/predict HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}",
        400,
        "bad Content-Length",
    ),
    "chunked": (
        b"POST /api/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        501,
        "Transfer-Encoding .* not implemented \\(501\\)",
    ),
    "chunked and a length": (
        b"POST /api/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "both Transfer-Encoding and Content-Length",
    ),
    "a length hidden after a bad line": (
        b"POST /api/predict HTTP/1.1\r\nNo colon here\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "header line is malformed",
    ),
    "a space before the colon": (
        b"POST /api/predict HTTP/1.1\r\nContent-Length : 2\r\n\r\n{}",
        400,
        "header line is malformed",
    ),
    "a 64 KiB header line": (
        b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 65536 + b"\r\n\r\n",
        431,
        "Line too long",
    ),
    "101 headers": (
        b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
        431,
        "Too many headers",
    ),
    "over the limit, body sent": (
        b"POST /api/predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1) + b"x" * 65536,
        413,
        "the limit is",
    ),
}


@pytest.mark.parametrize("name", FRAMING)
def test_bad_framing_gets_a_status_line_a_json_error_and_a_closed_connection(served, name):
    data, status, problem = FRAMING[name]
    got, headers, answer, lines = raw_exchange(served, data)
    assert got == status and re.search(problem, answer["error"]), answer
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    assert len(lines) == 1 and lines[0].isprintable(), lines


def test_a_good_raw_request_still_gets_its_answer(served):
    status, headers, answer, _ = raw_exchange(served, b"GET /api/model HTTP/1.0\r\n\r\n")
    assert status == 200 and answer["model"] == "best_params.npz" and "connection" not in headers


@pytest.mark.parametrize(
    "line",
    [
        b"GET /\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\xa0 HTTP/1.1",  # terminal escapes in the path
        b'GET /a\r127.0.0.1 "GET /admin HTTP/1.1" 200 - HTTP/1.1',  # a carriage return
        b"G\x1bET / HTTP/1.1",  # in the method
        b"\x00\x01\x02 / HTTP/1.1",
    ],
    ids=["path", "fake line", "method", "nul"],
)
def test_control_characters_from_a_request_are_escaped_in_the_log(served, line):
    status, _, answer, lines = raw_exchange(served, line + b"\r\n\r\n")
    assert 400 <= status < 600 and answer["error"]
    assert len(lines) == 1 and lines[0].isprintable(), lines
    assert "\\x" in lines[0]  # escaped, not dropped


def test_a_64_kib_request_line_is_cut_in_the_log(served):
    _, _, _, lines = raw_exchange(served, b"GET /" + b"a" * 60_000 + b" HTTP/1.1\r\n\r\n")
    assert len(lines) == 1 and len(lines[0]) <= 1000 and lines[0].endswith("...")
