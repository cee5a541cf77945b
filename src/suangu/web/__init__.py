"""The dashboard: server-rendered HTML pages with inline SVG charts (see :mod:`.pages`)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_dashboard(app: FastAPI, *, private: bool = False) -> None:
    """Serve the dashboard at ``/`` of ``app`` (an app of :func:`suangu.api.app.create_app`).

    ``private``: also the members' balances and the per-member pages (``/member/{id}``) for
    everyone (the demo on loopback); otherwise a member signs in with its API key to see its
    own page (:mod:`suangu.web.session`).
    """
    from suangu.web.pages import PageCache, router
    from suangu.web.session import router as sessions

    app.state.private_dashboard = private
    app.state.public_pages = PageCache()
    app.include_router(router)
    app.include_router(sessions)


__all__ = ["mount_dashboard"]
