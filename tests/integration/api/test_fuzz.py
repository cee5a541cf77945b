"""Schemathesis over the whole API: every operation of the OpenAPI document, as an operator,
a provider and a buyer, with generated parameters and bodies (valid and invalid). Every
answer must be a documented status, content type and schema, and none a server error.

Valid and invalid input (schemathesis' positive and negative modes), bounded:
:data:`EXAMPLES` cases per operation, mode and role (about 5,000 requests in all),
derandomized, about two minutes on two cores. ``SUANGU_FUZZ_EXAMPLES`` raises it for a
longer run. Rate limits are off (a fuzzer is one very busy key); the limits have tests of
their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from suangu.api.app import create_app  # noqa: E402
from suangu.api.clock import ManualClock  # noqa: E402
from suangu.api.settings import ApiSettings  # noqa: E402
from suangu.store.db import Database, make_engine, migrate, sqlite_url  # noqa: E402

from .conftest import EPOCH, T0, Api, build_world  # noqa: E402

EXAMPLES = int(os.environ.get("SUANGU_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _world(where: Path) -> Api:
    from fastapi.testclient import TestClient

    engine = make_engine(sqlite_url(where / "fuzz.db"))
    migrate(engine)
    db = Database(engine)
    clock = ManualClock(T0)
    app = create_app(
        db,
        clock,
        ApiSettings(grid_epoch=EPOCH, horizon_slots=6, rate_limit=False),
        energy=False,
        dashboard=False,
    )
    api = Api(TestClient(app), db, clock, "sqlite")
    build_world(api)
    return api


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    api = _world(tmp_path_factory.mktemp("fuzz"))
    yield api
    api.db.engine.dispose()


def _fuzz(api: Api, member: str) -> None:
    """Every operation, ``EXAMPLES`` generated cases each, as ``member``; fails listing each
    operation whose answers broke a check."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    headers = {"Authorization": f"Bearer {api.tokens[member]}"}
    failed: list[str] = []
    operations = 0
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        for mode in modes:
            failure = _fuzz_one(op, mode, headers)
            if failure:
                failed.append(f"{op.method.upper()} {op.path} ({mode.value}): {failure}")
    assert operations >= 40
    assert not failed, "\n\n".join(failed)


def _fuzz_one(op: Any, mode: Any, headers: dict[str, str]) -> str | None:
    """What broke on ``op`` with cases of ``mode`` (valid or invalid input), or None."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without input)
        return None
    except (Exception, FailureGroup) as err:  # what broke, with the case to reproduce it
        return str(err)[:2000]
    return None


@pytest.mark.slow
@pytest.mark.parametrize("member", ["op", "prov-a", "buy-a"])
def test_every_operation_as_three_roles(fuzz_world: Api, member: str) -> None:
    """0 server errors and 0 schema violations, as an operator, a provider and a buyer."""
    _fuzz(fuzz_world, member)
