"""0017 turns the heartbeat of each provider into its agent ``default`` serving all its pools,
keeps the times, and goes back (keeping the ``default`` agents) on downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from suangu.store.db import alembic_config, migrate


def test_0017_keeps_each_providers_heartbeat_as_its_default_agent(
    engine_url: tuple[str, Engine],
) -> None:
    _, engine = engine_url
    migrate(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO members (id, name, role, created_at) "
                "VALUES ('prov-a', 'A', 'provider', 0)"
            )
        )
        conn.execute(text("INSERT INTO agent_heartbeats VALUES ('prov-a', 'rack-1', 100, 200)"))
    migrate(engine, "0017")
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT provider_id, agent, pools, instance, first_seen, last_seen "
                "FROM agent_heartbeats"
            )
        ).all()
        assert [tuple(r) for r in rows] == [("prov-a", "default", None, "rack-1", 100, 200)]
        conn.execute(
            text(
                "INSERT INTO agent_heartbeats (provider_id, agent, pools, instance, "
                "first_seen, last_seen) VALUES ('prov-a', 'west', '[\"p\"]', 'w', 1, 2)"
            )
        )
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT * FROM agent_heartbeats")).all()
        assert [tuple(r) for r in rows] == [("prov-a", "rack-1", 100, 200)]
