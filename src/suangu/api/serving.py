"""Run the API under uvicorn on a listening socket of our own (``suangu serve``).

uvicorn binds the socket that it shares among several workers with
``socket.socket(family)``, whose ``proto`` is 0; asyncio sets ``TCP_NODELAY`` only on
connections accepted from a socket whose ``proto`` is ``IPPROTO_TCP``, so with ``--workers``
>= 2 every response waited for the client's delayed ACK (Nagle): about 40 ms each on Linux
loopback. :func:`listen` binds the socket with ``IPPROTO_TCP`` and ``TCP_NODELAY`` set (Linux
copies it to the accepted connections), and :func:`serve` hands it to ``uvicorn.Server``
(one worker) or to uvicorn's ``Multiprocess`` supervisor (several), which pass it to the
workers.

With uvloop and httptools installed (they are dependencies), uvicorn uses them: its
``auto`` loop and HTTP parser.
"""

from __future__ import annotations

import gc
import socket
from typing import TYPE_CHECKING

from suangu.core.errors import ValidationError

if TYPE_CHECKING:
    from fastapi import FastAPI

#: The ASGI app factory that ``suangu serve`` runs (reads ``SUANGU_DATABASE_URL``).
APP = "suangu.api.serving:app_from_env"
#: Allocations between two young-generation collections (CPython's default is 700).
GC_THRESHOLD0 = 20_000
#: Pending connections the kernel queues for the workers.
BACKLOG = 2048


def app_from_env() -> FastAPI:
    """:func:`suangu.api.app.app_from_env`, then the garbage collector set for serving.

    Everything alive once the app is built (modules, the app, SQLAlchemy's and Pydantic's
    structures: about a million objects) lives as long as the process: ``gc.freeze()`` moves
    it out of the collector's reach. Without it, every full collection walked all of it and
    stopped every thread for 50-100 ms (measured with ``gc.callbacks`` under load: 7 of them
    in 5 s at 900 orders/s, the bulk of the p99). Young collections run less often too
    (:data:`GC_THRESHOLD0`); what a request allocates is mostly freed by reference counting.
    """
    from suangu.api.app import app_from_env as build

    app = build()
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, g1, g2)
    return app


def listen(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` and listening, with ``TCP_NODELAY`` for the
    connections it accepts; inheritable, for worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        raise ValidationError(
            f"cannot listen on {host}:{port}: {err.strerror or err}",
            field="port",
            fix="choose a free port (--port) or stop what listens there",
        ) from None
    sock.set_inheritable(True)
    return sock


def prepare_metrics_dir(workers: int) -> str | None:
    """With several workers, a fresh directory for ``prometheus-client``'s multiprocess
    mode in ``PROMETHEUS_MULTIPROC_DIR`` (unless one is set), before the workers start (see
    :mod:`suangu.api.metrics`); emptied if it holds an earlier run's files."""
    import os
    import tempfile
    from pathlib import Path

    from suangu.api.metrics import MULTIPROC_ENV

    if workers <= 1 and not os.environ.get(MULTIPROC_ENV):
        return None
    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="suangu-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = directory
    return directory


def serve(
    host: str,
    port: int,
    workers: int = 1,
    *,
    access_log: bool = True,
    app: str = APP,
    log_format: str = "json",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Serve the app factory ``app`` on ``host:port`` with ``workers`` processes until
    interrupted (SIGINT / SIGTERM); ``access_log``: uvicorn's line per request; logs as
    ``log_format`` (``json`` or ``text``, see :func:`suangu.api.observe.log_config`); HTTPS
    with ``ssl_certfile`` and ``ssl_keyfile`` (PEM)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from suangu.api.observe import log_config

    prepare_metrics_dir(workers)
    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        backlog=BACKLOG,
        access_log=access_log,
        # Client addresses and schemes are the connection's: no X-Forwarded-* is trusted
        # (rate limits count per address; URLs never come from request headers).
        proxy_headers=False,
        log_config=log_config(log_format),
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    sock = listen(host, port)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C at the wrong moment
        pass
    finally:
        sock.close()
