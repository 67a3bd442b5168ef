"""The live page's web server: the page's three files, the model's figures and a JSON API.

    GET  /, /index.html, /app.js, /style.css   the page (core/serve/static/)
    GET  /api/model                            the Model tab: layer table, classes, figures
    GET  /figures/history.png, ...             the run's figures, by fixed names only
    POST /api/predict  {"image": "data:image/png;base64,..."}   everything the page shows

It is the standard library's ThreadingHTTPServer: no dependency to install, and enough
for a demo on one's own machine (one thread per connection; the model answers one
picture at a time). It listens on 127.0.0.1 unless told otherwise.

Every request that goes wrong is answered with a JSON ``{"error": "..."}``: 400 for a
malformed one, 404 for an unknown path, 405 for a wrong method, 411 without a
Content-Length, 413 for a body over ``MAX_BODY`` (refused before reading it); the log
gets one line per request, never a traceback.
"""

import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from core.serve.pictures import picture_bytes
from data.errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {  # path -> (file in STATIC, content type); nothing else is ever read from disk
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_BODY = 4 * 1024 * 1024  # a drawing is a few kB; a photo of a digit fits easily
# The page loads nothing from elsewhere: say so to the browser as well.
SECURITY_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'"


def log_to_stderr(line):
    """The default request log: one line on stderr, as http.server writes it."""
    print(line, file=sys.stderr, flush=True)


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

    def handle_error(self, request, client_address):
        """One line instead of the default traceback (a client that went away, mostly)."""
        if self.log is not None:
            error = sys.exc_info()[1]
            self.log(f"{client_address[0]}: connection dropped ({type(error).__name__}: {error})")


class Handler(BaseHTTPRequestHandler):
    """Answers one request of the live page (see the module docstring)."""

    server_version = "numpy-cnn-serve"
    timeout = 30  # seconds a client may stall mid-request before its connection is closed

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
        """The request body, or None after answering 411, 400 or 413.

        The length is checked before anything is read, so an oversized request costs
        nothing but its headers.
        """
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return None
        text = length.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            self._error(HTTPStatus.BAD_REQUEST, f"bad Content-Length: {length[:40]!r}")
            return None
        size = int(text)
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
        self._error(HTTPStatus(code), message or HTTPStatus(code).phrase)

    def _error(self, status, message, headers=None):
        """Answer ``status`` with ``{"error": message}``; the connection is then closed."""
        self.close_connection = True  # an unread body must not be taken for the next request
        body = json.dumps({"error": message}).encode("utf-8")
        self._send(status, body, "application/json", headers)

    def _send(self, status, body, content_type, headers=None):
        """Answer with ``body`` (bytes) of ``content_type``; HEAD gets the headers only."""
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
        """One line per request (and per protocol error) to the server's log, if any."""
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")
