"""The one place where errors become HTTP responses: RFC 9457 problem details.

Every problem is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, ``instance``, and Suangu's extensions ``code``, ``field`` (the input at fault,
as a dotted path such as ``body.gpus`` or ``header.Idempotency-Key``) and ``fix`` (how to
put it right). Validation problems also list every error under ``errors``.

=============================================  =====
error                                          status
=============================================  =====
malformed JSON / YAML body                     400
missing, unknown or revoked API key            401
role not allowed                               403
unknown object (or another member's)           404
``Conflict``, ``InvalidState``, idempotency    409
request body too large                         413
wrong ``Content-Type``                         415
``ValidationError`` (core), request schema     422
too many requests (:mod:`suangu.api.limits`)   429
``RetryExhausted`` (lock contention)           503
``ObjectStoreError`` (blob missing or altered)  503
=============================================  =====

The OpenAPI document (:func:`document_problems`) gives every operation these answers as
``application/problem+json`` of the schema ``Problem``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from suangu.core.errors import SolverError, SuanguError, ValidationError
from suangu.store.errors import Conflict, NotFound, RetryExhausted, Unauthorized
from suangu.store.objects import ObjectStoreError

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://suangu.dev/problems/"


class ApiError(SuanguError):
    """Base of the errors the API itself raises."""

    code = "api_error"


class Forbidden(ApiError):
    """The caller's role may not use this endpoint."""

    code = "forbidden"


class MalformedBody(ApiError):
    """The request body is not well-formed JSON or YAML."""

    code = "malformed_body"


class IdempotencyConflict(Conflict):
    """An ``Idempotency-Key`` reused with another request."""

    code = "idempotency_conflict"


class PayloadTooLarge(ApiError):
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"


#: Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (MalformedBody, 400, "Malformed request body"),
    (Unauthorized, 401, "Not authenticated"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (PayloadTooLarge, 413, "Payload too large"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (ValidationError, 422, "Invalid input"),
    (RetryExhausted, 503, "Busy, retry later"),
    (ObjectStoreError, 503, "Object store failed"),
    (SolverError, 503, "Solver failed"),
    (SuanguError, 400, "Bad request"),
)


#: The problem answers every operation may give, as documented in OpenAPI.
PROBLEM_STATUSES = {
    400: "Malformed request (body, header or parameters)",
    401: "No, unknown or revoked API key",
    403: "The key's role may not do this",
    404: "No such object (or another member's)",
    405: "Method not allowed (the `Allow` header lists the path's methods)",
    409: "Conflict with stored data or state, or an Idempotency-Key reused",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    422: "Invalid input: `field` names it",
    429: "Too many requests: see `Retry-After`",
    500: "Internal error",
    503: "Busy: retry later",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details, with the field at fault and a fix.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string"},
        "field": {"type": ["string", "null"]},
        "fix": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "fix": {"type": ["string", "null"]},
                },
            },
        },
    },
}


def document_problems(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document say what errors look like: the ``Problem`` schema as
    ``application/problem+json`` for each status of :data:`PROBLEM_STATUSES` on every
    operation (replacing FastAPI's own 422 schema, which the API never sends), with
    ``Retry-After`` on 429 and ``Allow`` on 405."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        ref = {"$ref": "#/components/schemas/Problem"}
        for item in doc.get("paths", {}).values():
            for op in item.values():
                answers = op.setdefault("responses", {})
                for status, what in PROBLEM_STATUSES.items():
                    answer: dict[str, Any] = {
                        "description": what,
                        "content": {PROBLEM_JSON: {"schema": ref}},
                    }
                    if status == 429:
                        answer["headers"] = {
                            "Retry-After": {
                                "description": "seconds to wait",
                                "schema": {"type": "integer"},
                            }
                        }
                    if status == 405:
                        answer["headers"] = {
                            "Allow": {
                                "description": "the path's methods",
                                "schema": {"type": "string"},
                            }
                        }
                    answers[str(status)] = answer
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: Any, path: str) -> list[str] | None:
    """The methods that ``app``'s OpenAPI document lists for the path templates matching
    ``path`` (what ``Allow`` of a 405 says: ``/orders/yaml`` takes ``POST`` and, as an
    order id, ``GET``), or None if no documented path matches."""
    import re

    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, item in app.openapi().get("paths", {}).items():
            parts = re.split(r"(\{[^}/]+\})", template)
            regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            table.append((re.compile(regex + "$"), sorted(m.upper() for m in item)))
        app.state.allow_table = table
    found = [set(methods) for regex, methods in table if regex.match(path)]
    return sorted(set().union(*found)) if found else None


def status_of(err: BaseException) -> tuple[int, str]:
    for kind, status, title in STATUS:
        if isinstance(err, kind):
            return status, title
    return 500, "Internal error"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    field: str | None = None,
    fix: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "field": field,
        "fix": fix,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_of(err: SuanguError, instance: str | None = None) -> JSONResponse:
    """The problem response of a domain, store or API error."""
    status, title = status_of(err)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(
        status,
        title,
        err.message,
        code=err.code,
        field=err.field,
        fix=err.fix,
        instance=instance,
        headers=headers,
    )


def _loc_field(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_FIX_BY_TYPE = {
    "extra_forbidden": "remove it; see the schema at /docs",
    "missing": "add it; see the schema at /docs",
    "json_invalid": "send well-formed JSON",
}


def validation_problem(err: RequestValidationError, instance: str) -> JSONResponse:
    """Pydantic request validation: 422 naming the first field (400 for malformed JSON)."""
    items = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        kind = str(e.get("type", "invalid"))
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" if loc else "unknown field"
        if kind == "json_invalid":
            at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            reason = (e.get("ctx") or {}).get("error", "")
            message = f"malformed JSON{at}" + (f": {reason}" if reason else "")
            loc = ("body",)
        items.append(
            {
                "field": _loc_field(loc),
                "message": message,
                "type": kind,
                "fix": _FIX_BY_TYPE.get(kind, "see the schema at /docs"),
            }
        )
    first = items[0] if items else {"field": "body", "message": "invalid", "fix": None}
    malformed = any(i.get("type") == "json_invalid" for i in items)
    status = 400 if malformed else 422
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return problem(
        status,
        "Malformed request body" if malformed else "Invalid input",
        f"{first['field']}: {first['message']}{more}",
        code="malformed_body" if malformed else "invalid",
        field=str(first["field"]),
        fix=first["fix"],
        instance=instance,
        errors=items,
    )


def install(app: FastAPI) -> None:
    """Register the handlers: the one mapping from errors to responses."""

    @app.exception_handler(SuanguError)
    async def _suangu(request: Request, err: SuanguError) -> JSONResponse:
        return problem_of(err, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, err: RequestValidationError) -> JSONResponse:
        return validation_problem(err, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        headers = dict(err.headers) if err.headers else {}
        if err.status_code == 405:
            methods = allowed_methods(request.app, request.url.path)
            if methods is not None:
                headers["Allow"] = ", ".join(methods)
        return problem(
            err.status_code,
            str(err.detail),
            str(err.detail),
            code=code,
            field="path" if err.status_code in (404, 405) else None,
            fix="see the endpoints at /docs",
            instance=request.url.path,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        return problem(
            500,
            "Internal error",
            "the exchange failed to answer; nothing was changed",
            code="internal",
            fix="retry with the same Idempotency-Key; report it if it persists",
            instance=request.url.path,
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, err: IntegrityError) -> JSONResponse:
        return problem(
            409,
            "Conflict",
            "the write clashes with stored data",
            code="conflict",
            field="body",
            fix="check the ids you refer to and retry",
            instance=request.url.path,
        )
