"""The live service's HTTP API (starlette, served by uvicorn in a thread beside the bar loop).

``GET /signal[?symbol=S]`` (``cryptoml signal``'s JSON, from memory), ``GET /health`` (200
whenever the process is up, also while warming up), ``GET /metrics`` (Prometheus text) and
``POST /kill`` (flatten and stop). Loopback by default; a non-loopback bind needs a token
(``CRYPTOML_LIVE_TOKEN``), then every endpoint but ``/health`` needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
from typing import TYPE_CHECKING

from cryptoml_pipeline.errors import InputError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from cryptoml_pipeline.live.service import LiveService

TOKEN_ENV = "CRYPTOML_LIVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_token(host: str) -> str | None:
    """The token the API asks for: none on loopback (unless set), required elsewhere."""
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} is not loopback: set {TOKEN_ENV} (the API's token)")
    return token


def make_app(service: LiveService, token: str | None = None) -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def denied() -> JSONResponse:
        return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)

    async def signal(request: Request) -> JSONResponse:
        if not authorised(request):
            return denied()
        symbol = request.query_params.get("symbol")
        if symbol is not None and symbol not in service.trading:
            return JSONResponse(
                {"error": f"{symbol} is not traded; traded: {list(service.trading)}"},
                status_code=404,
            )
        body = service.signal(symbol)
        if not body:
            return JSONResponse({"error": "warming up: no signal yet"}, status_code=503)
        return JSONResponse(body)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(service.health())

    async def metrics(request: Request) -> Response:
        if not authorised(request):
            return denied()
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def kill(request: Request) -> JSONResponse:
        if not authorised(request):
            return denied()
        service.request_kill()
        return JSONResponse({"status": "killing: flatten and stop"}, status_code=202)

    return Starlette(
        routes=[
            Route("/signal", signal, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/kill", kill, methods=["POST"]),
        ]
    )


class ApiServer:
    """uvicorn in a daemon thread (the bar loop keeps the main thread)."""

    def __init__(self, service: LiveService, host: str, port: int, token: str | None) -> None:
        import uvicorn

        config = uvicorn.Config(
            make_app(service, token), host=host, port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-api", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise InputError("the HTTP API did not start (port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
