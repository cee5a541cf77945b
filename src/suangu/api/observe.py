"""Request ids, structured logs and request metrics: one ASGI middleware.

* **Request ids.** A request's ``X-Request-ID`` header (1 to 128 letters, digits and
  ``._:-``) is its id, else a new one is made (32 hex digits); the response carries it back
  in ``X-Request-ID``. While the request runs, :func:`current` gives its
  :class:`RequestInfo` (id, method, and after routing the route template and path
  parameters): the audit trail (:mod:`suangu.api.audit`) and the logs read it from there.
* **Logs.** :class:`JsonFormatter` writes one JSON object per line (``ts``, ``level``,
  ``logger``, ``message``, ``request_id`` while a request runs, the access log's ``method``,
  ``path``, ``status`` and ``client``); :func:`log_config` is the ``logging`` configuration
  ``suangu serve`` hands to uvicorn (``--log-format json``, the default, or ``text``).
* **Metrics.** Each request's latency goes into the histogram
  ``suangu_http_request_duration_seconds`` by method, route template (``/api/v1/orders/{order_id}``,
  never the raw path: ``unmatched`` for a path no route serves) and status; see
  :mod:`suangu.api.metrics` for ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request being served: its id, method, and the ASGI scope (routing fills in the
    route and its path parameters)."""

    request_id: str
    method: str
    scope: Scope

    @property
    def route(self) -> str | None:
        """The template of the route that served the request, with the prefix it is mounted
        under (``/api/v1/orders/{order_id}``); ``None``: no route matched."""
        route = self.scope.get("route")
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            return None
        # Some FastAPI versions keep an included router's prefix out of its routes' paths:
        # take it from the request's path (the API's path parameters are one segment each).
        actual = str(self.scope.get("path", ""))
        extra = actual.count("/") - template.count("/")
        if extra <= 0 or ":path}" in template:
            return template
        return "/".join(actual.split("/")[: extra + 1]) + template

    @property
    def path_params(self) -> dict[str, Any]:
        return dict(self.scope.get("path_params") or {})


CURRENT: ContextVar[RequestInfo | None] = ContextVar("suangu_request", default=None)


def current() -> RequestInfo | None:
    """The request this code serves, if any."""
    return CURRENT.get()


def current_id() -> str | None:
    info = CURRENT.get()
    return None if info is None else info.request_id


def _incoming_id(scope: Scope) -> str:
    for key, value in scope.get("headers") or ():
        if key == _HEADER_KEY:
            text: str = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class ObserveMiddleware:
    """Request id in and out, the request's context, its latency in the metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from suangu.api.metrics import observe_request

        rid = _incoming_id(scope)
        info = RequestInfo(rid, str(scope.get("method", "GET")), scope)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(HEADER, rid)
            await send(message)

        token = CURRENT.set(info)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT.reset(token)
            observe_request(info.method, info.route, status, time.perf_counter() - start)


def install(app: Any) -> None:
    """Add :class:`ObserveMiddleware` to ``app`` and serve ``/metrics``
    (:mod:`suangu.api.metrics`). Call it last: the middleware then wraps every other one,
    so that their answers carry the request id too."""
    from suangu.api import metrics

    metrics.mount(app)
    app.add_middleware(ObserveMiddleware)


# -- logs ---------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (``None`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docs)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or current_id()
        if rid is not None:
            doc["request_id"] = rid
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            doc.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_id() or "-"
        return super().format(record)


LOG_FORMATS = ("json", "text")


def log_config(fmt: str = "json", level: str = "INFO") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``suangu serve``: uvicorn's loggers and
    ``suangu``'s, to stderr, in ``fmt`` (``json`` or ``text``)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "main",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": handler},
        "loggers": {
            "uvicorn": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["main"], "level": level, "propagate": False},
            "suangu": {"handlers": ["main"], "level": level, "propagate": False},
        },
    }
