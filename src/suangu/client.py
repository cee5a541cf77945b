"""A small HTTP client of the Suangu API, for the ``suangu`` client commands.

The server's URL comes from ``--url`` or ``SUANGU_URL`` (default ``http://127.0.0.1:8000``),
the API key from ``--key`` or ``SUANGU_KEY``. Every failure becomes a :class:`ClientError`
with one line to print: a server that is down, a refused key, and the server's
problem details (``field``: ``detail`` (``fix``)) for everything else. Tests pass an httpx
``transport`` (``httpx.MockTransport``, or any other) instead of the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from suangu.core.errors import SuanguError

URL_ENV = "SUANGU_URL"
KEY_ENV = "SUANGU_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
PREFIX = "/api/v1"
#: Items per page when a command lists everything.
PAGE = 500
#: Most pages one list follows (500 x 200 = 100,000 items).
MAX_PAGES = 200


class ClientError(SuanguError):
    """A request that failed; ``str()`` is the one line the CLI prints."""

    code = "client"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(" ".join(message.split()))

    def __str__(self) -> str:
        return self.message


def problem_line(body: Mapping[str, Any], status: int, rename: str | None = None) -> str:
    """One line of an RFC 9457 problem: ``field: detail (fix)``; ``rename`` replaces a
    leading ``body`` in the field (the file a command sent)."""
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    field = body.get("field")
    if isinstance(field, str) and field:
        if rename is not None and (field == "body" or field.startswith(("body.", "body["))):
            rest = field[len("body") :].lstrip(".")
            field = f"{rename}: {rest}" if rest else rename
        detail = f"{field}: {detail}"
    fix = body.get("fix")
    if fix:
        detail += f" ({fix})"
    return detail


class SuanguClient:
    """Calls ``/api/v1`` of one server with one key."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            self._http = httpx.Client(
                base_url=self.url + PREFIX, headers=headers, transport=transport, timeout=timeout
            )
        except (httpx.InvalidURL, ValueError) as err:
            raise ClientError(
                f"{url!r} is not a server URL ({err}): give e.g. --url {DEFAULT_URL}"
            ) from None

    def __enter__(self) -> SuanguClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        rename: str | None = None,
        needs_key: bool = True,
    ) -> Any:
        """The decoded JSON answer of a successful call, or a :class:`ClientError`."""
        if needs_key and not self.key:
            raise ClientError(
                f"no API key: pass --key or set {KEY_ENV} to the key an operator created for you"
            )
        try:
            r = self._http.request(
                method,
                path,
                json=json,
                content=content,
                headers=dict(headers or {}),
                params={k: v for k, v in (params or {}).items() if v is not None},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise ClientError(
                f"the Suangu server at {self.url} is not reachable: start it with "
                f"`suangu serve`, or point --url / {URL_ENV} at a running one"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the Suangu server at {self.url} did not answer in time") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise ClientError(
                f"{self.url!r} is not a server URL: give e.g. --url {DEFAULT_URL}"
            ) from None
        except httpx.TransportError as err:
            raise ClientError(f"cannot talk to the Suangu server at {self.url}: {err}") from None
        return self._answer(r, rename)

    def _answer(self, r: httpx.Response, rename: str | None) -> Any:
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = None
        if r.is_success:
            if body is None and r.content:
                raise ClientError(
                    f"the server at {self.url} answered {r.status_code} without JSON: is it a "
                    "Suangu server?",
                    status=r.status_code,
                )
            return body
        if not isinstance(body, dict):
            text = " ".join(r.text.split())[:200] or r.reason_phrase
            raise ClientError(
                f"the server at {self.url} answered {r.status_code}: {text}", status=r.status_code
            )
        if r.status_code == 401:
            raise ClientError(
                f"the API key was refused: {body.get('detail') or 'unauthorized'} (check --key "
                f"or {KEY_ENV}: a key an operator created, not revoked)",
                status=401,
            )
        line = problem_line(body, r.status_code, rename)
        if r.status_code == 403:
            line = f"not allowed: {line}"
        raise ClientError(line, status=r.status_code)

    def download(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, Mapping[str, str]]:
        """The raw bytes and headers of a successful ``GET`` (data objects' content)."""
        if not self.key:
            raise ClientError(
                f"no API key: pass --key or set {KEY_ENV} to the key an operator created for you"
            )
        try:
            r = self._http.get(path, headers=dict(headers or {}))
        except httpx.TransportError:
            raise ClientError(
                f"the Suangu server at {self.url} is not reachable: start it with "
                f"`suangu serve`, or point --url / {URL_ENV} at a running one"
            ) from None
        if not r.is_success:
            self._answer(r, None)  # raises the server's problem as a ClientError
        return r.content, r.headers

    def upload(self, path: str, data: bytes, params: Mapping[str, str]) -> Any:
        """``POST`` raw bytes (a data object, a lease's output); the JSON answer."""
        return self.request(
            "POST",
            path,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            params=params,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=json, **kw)

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list (following ``next_cursor``)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self.get(path, limit=PAGE, cursor=cursor, **params)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items
