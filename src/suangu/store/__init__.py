"""Persistence of the exchange: SQLAlchemy 2.0 models, repositories, Alembic migrations.

SQLite (WAL, one file) is the embedded default; PostgreSQL when ``SUANGU_DATABASE_URL`` says so
(see :func:`suangu.store.db.database_url`). The rules live in :mod:`suangu.core`; this package
only stores what the core decides.
"""
