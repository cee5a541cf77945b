"""Limits every request meets before the app reads it: its body size and its rate.

Both are plain ASGI middleware (:class:`BodyLimit`, :class:`RateLimit`), outside FastAPI's
routing, so they act before a request body is read, before its key is checked and whoever
sends it; their refusals are problem details like every other error.

**Body size** (:class:`BodyLimit`): a request whose ``Content-Length`` is over the limit gets
413 at once, unread; a chunked body (no length) is counted as it streams in, and the moment
it passes the limit the request gets 413 (whatever the app was doing with it: the app never
sees more than the limit) and the connection is closed.

**Rate** (:class:`RateLimit`): token buckets, in each worker process (``N`` workers allow
up to ``N`` times the rates; a proxy in front of several hosts should limit on its own):

* per API key (the sha256 of the bearer token): ``key_rate_per_s``, ``key_burst``;
* per client address for requests without a key (the public market data, the dashboard):
  ``address_rate_per_s``, ``address_burst``;
* per client address, failed authentications (answers 401 to a request that sent a key):
  ``auth_failures_per_s``,
  ``auth_failure_burst``. While an address has none left, every request of it that carries
  a key gets 429 before the key is looked at: guessing keys costs a second per guess.

A refused request gets 429 with ``Retry-After`` (whole seconds). The client address is the
connection's (``X-Forwarded-For`` is not trusted: behind a reverse proxy every client shares
the proxy's address, so let the proxy limit per client). The buckets of unknown keys and
addresses are kept in a bounded LRU (:data:`MAX_BUCKETS`), so random keys cannot exhaust
memory.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from suangu.api.errors import PROBLEM_JSON, TYPE_BASE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Buckets one limiter keeps (least recently used dropped first: a dropped bucket was full or
#: refills as a new, full one).
MAX_BUCKETS = 50_000


def problem_bytes(
    status: int, title: str, detail: str, *, code: str, field: str, fix: str, instance: str
) -> bytes:
    """The JSON of a problem (as :func:`suangu.api.errors.problem`), for raw ASGI replies."""
    import json

    body = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "field": field,
        "fix": fix,
        "instance": instance,
    }
    return json.dumps(body).encode()


async def send_problem(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


# -- body size ------------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    """Raised into the app by the counting ``receive`` once the body passes the limit."""


class BodyLimit:
    """413 for a request body over ``max_bytes`` (see the module docs)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _problem(self, scope: Scope, detail: str) -> bytes:
        return problem_bytes(
            413,
            "Payload too large",
            detail,
            code="payload_too_large",
            field="body",
            fix=f"send at most {self.max_bytes} bytes",
            instance=str(scope.get("path", "")),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = [(b"connection", b"close")]
        length = _header(scope, b"content-length")
        if length is not None:
            text = length.decode("latin-1").strip()
            if not text.isdigit() or len(text) > 18 or int(text) > self.max_bytes:
                detail = (
                    f"Content-Length {text[:20]} is over the limit of {self.max_bytes} bytes"
                    if text.isdigit()
                    else f"Content-Length {text[:20]!r} is not a length"
                )
                status = 413 if text.isdigit() else 400
                body = self._problem(scope, detail)
                if status == 400:
                    body = problem_bytes(
                        400,
                        "Bad request",
                        detail,
                        code="malformed_body",
                        field="header.Content-Length",
                        fix="send the body's length in bytes",
                        instance=str(scope.get("path", "")),
                    )
                await send_problem(send, status, body, close)
                return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a body it could not read: ours is sent below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            detail = f"the body is over the limit of {self.max_bytes} bytes"
            await send_problem(send, 413, self._problem(scope, detail), close)


# -- rate ---------------------------------------------------------------------------------------


class Buckets:
    """Token buckets by key: ``rate`` tokens a second up to ``burst``, in a bounded LRU."""

    def __init__(self, rate: float, burst: int, max_buckets: int = MAX_BUCKETS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max = max_buckets
        self._lock = threading.Lock()
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, stamp = self._b.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def take(self, key: str, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 if there were enough, else the seconds until there are
        (nothing taken)."""
        with self._lock:
            level = self._level(key, now)
            if level < n:
                self._b[key] = (level, now)
                self._b.move_to_end(key)
                return (n - level) / self.rate
            self._store(key, level - n, now)
            return 0.0

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a whole token (0.0: it has one now); takes nothing."""
        with self._lock:
            if key not in self._b:
                return 0.0
            level = self._level(key, now)
            return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def charge(self, key: str, now: float) -> None:
        """Take one token, going below zero if need be (a debt the key waits out)."""
        with self._lock:
            self._store(key, max(-self.burst, self._level(key, now) - 1.0), now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._b[key] = (tokens, now)
        self._b.move_to_end(key)
        while len(self._b) > self.max:
            self._b.popitem(last=False)


def _bearer(scope: Scope) -> str | None:
    raw = _header(scope, b"authorization")
    if raw is None:
        return None
    scheme, _, token = raw.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class RateLimit:
    """429 with ``Retry-After`` past the per-key, per-address and failed-authentication
    rates (see the module docs)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        key_rate: float,
        key_burst: int,
        address_rate: float,
        address_burst: int,
        failure_rate: float,
        failure_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.keys = Buckets(key_rate, key_burst)
        self.addresses = Buckets(address_rate, address_burst)
        self.failures = Buckets(failure_rate, failure_burst)
        self.clock = clock

    async def _refuse(self, scope: Scope, send: Send, wait: float, detail: str, fix: str) -> None:
        after = max(1, math.ceil(wait))
        body = problem_bytes(
            429,
            "Too many requests",
            detail,
            code="rate_limited",
            field="header.Authorization" if _bearer(scope) else "client",
            fix=f"{fix}; retry after {after} s",
            instance=str(scope.get("path", "")),
        )
        await send_problem(send, 429, body, [(b"retry-after", str(after).encode())])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "-"
        now = self.clock()
        token = _bearer(scope)
        if token is not None:
            wait = self.failures.wait(address, now)
            if wait > 0:
                await self._refuse(
                    scope,
                    send,
                    wait,
                    "too many requests with unknown or revoked API keys from this address",
                    "check the key you send",
                )
                return
            digest = hashlib.sha256(token.encode()).hexdigest()
            wait = self.keys.take(digest, now)
            if wait > 0:
                await self._refuse(
                    scope, send, wait, "too many requests with this API key", "slow down"
                )
                return
        else:
            wait = self.addresses.take(address, now)
            if wait > 0:
                await self._refuse(
                    scope,
                    send,
                    wait,
                    "too many requests without an API key from this address",
                    "slow down, or send your API key",
                )
                return

        if token is None:
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failures.charge(address, self.clock())
            await send(message)

        await self.app(scope, receive, watch)
