"""The dashboard web server: stdlib ``http.server`` on 127.0.0.1 serving a static page, JSON
endpoints (``/api/<panel>``) and PNG plots (``/plot/<name>.png``). Read-only."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptoml_pipeline.dashboard.data import PANELS, DashboardData

logger = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
PLOTS = ("backtest", "predictions", "rolling", "confidence", "importance", "live")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


def make_handler(data: DashboardData) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            logger.debug("dashboard: " + format, *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                path = "/index.html"
            if path.startswith("/api/") and path[5:] in PANELS:
                body = json.dumps(data.payload(path[5:])).encode()
                return self._send(HTTPStatus.OK, body, "application/json")
            if path.startswith("/plot/") and path.endswith(".png") and path[6:-4] in PLOTS:
                return self._send(HTTPStatus.OK, data.plot(path[6:-4]), "image/png")
            if path == "/favicon.ico":
                return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            static = STATIC / path.lstrip("/")
            if static.parent == STATIC and static.is_file():
                kind = CONTENT_TYPES.get(static.suffix, "application/octet-stream")
                return self._send(HTTPStatus.OK, static.read_bytes(), kind)
            return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    return Handler


def make_server(data: DashboardData, port: int) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1 only (``port`` 0 picks a free port)."""
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(data))
