"""The exchange's HTTP API: FastAPI under ``/api/v1``, bearer API keys with roles.

``create_app(db, clock)`` builds the app; see :mod:`suangu.api.app`. Routes are thin: they
check the caller's role, call the service functions of :mod:`suangu.api.services` and the
store's repositories, and map every error to RFC 9457 problem details in one place
(:mod:`suangu.api.errors`).
"""
