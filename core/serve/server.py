"""The live page's web server: the page's three files, the model's figures and a JSON API.

    GET  /, /index.html, /app.js, /style.css   the page (core/serve/static/)
    GET  /api/model                            the Model tab: layer table, classes, figures
    GET  /figures/history.png, ...             the run's figures, by fixed names only
    POST /api/predict  {"image": "data:image/png;base64,..."}   everything the page shows

It is the standard library's ThreadingHTTPServer: no dependency to install, and enough
for a demo on one's own machine (one thread per connection; the model answers one
picture at a time). It listens on 127.0.0.1 unless told otherwise.

Every request that goes wrong is answered with a status line and a JSON
``{"error": "..."}``, and its connection is closed: 400 for a malformed one (request line,
header line, JSON) or one whose body's end is unclear (two Content-Lengths, a bad one,
Transfer-Encoding beside one), 404 for an unknown path, 405 for a wrong method, 411
without a Content-Length, 413 for a body over ``MAX_BODY`` (refused before reading it),
414 for a request line over 64 KiB, 431 for headers over http.server's limits, 501 for an
unknown method or a Transfer-Encoding (chunked bodies are not implemented), 505 for
HTTP/0.9 or 2 and above. The log gets one line per request, never a traceback, with
anything unprintable from the request escaped (``data.errors.printable``).
"""

import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from core.serve.pictures import picture_bytes
from data.errors import UserError, printable

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {  # path -> (file in STATIC, content type); nothing else is ever read from disk
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_BODY = 4 * 1024 * 1024  # a drawing is a few kB; a photo of a digit fits easily
LOG_CHARS = 1000  # a log line is cut here: a request line may be 64 KiB of anything
# The page loads nothing from elsewhere: say so to the browser as well.
SECURITY_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'"


def log_to_stderr(line):
    """The default request log: one line on stderr, as http.server writes it."""
    print(line, file=sys.stderr, flush=True)


def declared_length(text):
    """The body size a Content-Length value declares, or None when it is not a plain number.

    Only ASCII digits, at most 18 (the value fits an int64), with spaces around them.
    """
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def framing_refusal(headers):
    """Why a request's end cannot be found for sure, as (status, message), or None.

    headers: the request's ``http.client.HTTPMessage``.
    A body is read by its one Content-Length only. A second one, a Transfer-Encoding
    (chunked is not implemented) or a header line the parser could not read (the
    headers after it are lost, a Content-Length among them) leaves it unclear where
    this request ends and the next one begins: refused before any routing.
    """
    if headers.defects:
        return (
            HTTPStatus.BAD_REQUEST,
            "a header line is malformed (no colon, or it starts with a space)",
        )
    lengths = headers.get_all("Content-Length", [])
    if headers.get_all("Transfer-Encoding"):
        if lengths:
            return (
                HTTPStatus.BAD_REQUEST,
                "both Transfer-Encoding and Content-Length: the body's length is ambiguous",
            )
        return (
            HTTPStatus.NOT_IMPLEMENTED,
            "Transfer-Encoding (a chunked body) is not implemented (501); "
            "send the body with a Content-Length",
        )
    if len(lengths) > 1:
        return HTTPStatus.BAD_REQUEST, f"{len(lengths)} Content-Length headers; send exactly one"
    if lengths and declared_length(lengths[0]) is None:
        return HTTPStatus.BAD_REQUEST, f"bad Content-Length: {lengths[0][:40]!r}"
    return None


class LiveServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the LivePage (core/serve/live.py) and the page's files.

    address: (host, port); port 0 picks a free port (``server_address`` says which).
    live:    the LivePage to answer with.
    log:     a callable taking one line per request, or None for silence.
    """

    daemon_threads = True  # a hung client never keeps the process alive
    # Connections waiting to be accepted: socketserver's 5 resets clients in a burst of 50.
    request_queue_size = 128

    def __init__(self, address, live, log=log_to_stderr):
        self.live = live
        self.log = log
        self.pages = {
            path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()
        }
        self.model_json = json.dumps(live.model_tab()).encode("utf-8")
        if ":" in address[0]:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def url(self):
        """The page's address, e.g. http://127.0.0.1:8000/."""
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def note(self, line):
        """Log ``line`` as one printable line (escaped, cut to ``LOG_CHARS``), unless silent."""
        if self.log is not None:
            self.log(printable(line, LOG_CHARS))

    def handle_error(self, request, client_address):
        """One line instead of the default traceback (a client that went away, mostly)."""
        error = sys.exc_info()[1]
        self.note(f"{client_address[0]}: connection dropped ({type(error).__name__}: {error})")


class Handler(BaseHTTPRequestHandler):
    """Answers one request of the live page (see the module docstring)."""

    server_version = "numpy-cnn-serve"
    timeout = 30  # seconds a client may stall mid-request before its connection is closed

    def parse_request(self):
        """http.server's parsing, then refusals of what it lets through: HTTP/0.9, unclear framing.

        Returns True for a request to route; False once the request has been answered.
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")  # as http.server reads it
        if len(line.split()) == 2:
            # HTTP/0.9 ("GET /", no version): refused before http.server would wait for
            # headers that such a client never sends.
            self.command, self.request_version, self.requestline = None, self.protocol_version, line
            self._error(
                HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                "HTTP/0.9 is not supported (the request line names no version); "
                "use HTTP/1.0 or HTTP/1.1",
            )
            return False
        if not super().parse_request():
            return False
        refusal = framing_refusal(self.headers)
        if refusal is not None:
            self._error(*refusal)
            return False
        return True

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_HEAD(self):
        self._route("HEAD")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PATCH(self):
        self._route("PATCH")

    def do_OPTIONS(self):
        self._route("OPTIONS")

    def _route(self, method):
        """Send the request to its handler, or answer 404 or 405."""
        path = urlsplit(self.path).path
        figure = path.removeprefix("/figures/")
        handlers = {}
        if path in self.server.pages:
            handlers["GET"] = lambda: self._send(HTTPStatus.OK, *self.server.pages[path])
        elif path == "/api/model":
            handlers["GET"] = lambda: self._send(
                HTTPStatus.OK, self.server.model_json, "application/json"
            )
        elif path.startswith("/figures/") and figure in self.server.live.figures:
            handlers["GET"] = lambda: self._send(
                HTTPStatus.OK, self.server.live.figures[figure], "image/png"
            )
        elif path == "/api/predict":
            handlers["POST"] = self._predict
        if "GET" in handlers:
            handlers["HEAD"] = handlers["GET"]  # _send leaves the body out
        if not handlers:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
            return
        if method not in handlers:
            allowed = ", ".join(handlers)
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{path} takes {allowed}, not {method}",
                {"Allow": allowed},
            )
            return
        try:
            handlers[method]()
        except (ConnectionError, TimeoutError):
            raise  # the client went away: LiveServer.handle_error logs one line
        except Exception as err:  # a bug: the page gets its message, the log one line
            self.log_message("internal error: %s: %s", type(err).__name__, err)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {err}")

    def _predict(self):
        """POST /api/predict: the picture's prediction, layers and saliency, as JSON."""
        body = self._body()
        if body is None:
            return
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(HTTPStatus.BAD_REQUEST, 'the body must be JSON: {"image": "data:..."}')
            return
        if not isinstance(request, dict) or "image" not in request:
            self._error(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object with an "image"')
            return
        try:
            answer = self.server.live.predict(picture_bytes(request["image"]))
        except UserError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        self._send(HTTPStatus.OK, json.dumps(answer).encode("utf-8"), "application/json")

    def _body(self):
        """The request body, or None after answering 411, 413 or 400.

        The length is checked before anything is read, so an oversized request costs
        nothing but its headers (``parse_request`` has already refused a bad one).
        """
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return None
        size = declared_length(length)
        if size > MAX_BODY:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {size:,} bytes; the limit is {MAX_BODY:,}",
            )
            return None
        body = self.rfile.read(size)
        if len(body) < size:
            self._error(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
            return None
        return body

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, an unknown method), as JSON."""
        message = message or HTTPStatus(code).phrase
        self._error(HTTPStatus(code), f"{message} ({explain})" if explain else message)

    def _error(self, status, message, headers=None):
        """Answer ``status`` with ``{"error": message}``; the connection is then closed."""
        self.close_connection = True  # an unread body must not be taken for the next request
        body = json.dumps({"error": message}).encode("utf-8")
        self._send(status, body, "application/json", {"Connection": "close", **(headers or {})})

    def _send(self, status, body, content_type, headers=None):
        """Answer with ``body`` (bytes) of ``content_type``; HEAD gets the headers only."""
        if self.request_version == "HTTP/0.9":
            # http.server's value until a request line is understood, and it then writes
            # no status line and no headers: a bare body would be no answer at all.
            self.request_version = self.protocol_version
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", SECURITY_POLICY)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        """One line per request (and per protocol error) to the server's log, if any.

        The request line is the client's bytes: ``LiveServer.note`` escapes them, so a
        request cannot write terminal escapes or a line of its own into the log.
        """
        self.server.note(f"{self.address_string()} {format % args}")
