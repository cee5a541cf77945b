"""``suangu agent``: run a provider agent against a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from suangu.commands.common import fail
from suangu.core.errors import SuanguError


def agent_command(
    config: Annotated[Path, typer.Argument(help="Agent configuration (YAML).")],
    key: Annotated[str | None, typer.Option(help="Provider API key (default: key_env).")] = None,
    once: Annotated[bool, typer.Option(help="Run one tick and exit.")] = False,
) -> None:
    """Run a provider agent: start leases on local GPUs or Slurm, meter and report them."""
    import logging
    import time

    from suangu.agent.config import api_key, build_executor, build_meter, load_config
    from suangu.agent.runner import ProviderAgent
    from suangu.client import SuanguClient

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        spec = load_config(config)
        meter = build_meter(spec.meter)
        client = SuanguClient(spec.url, api_key(spec, key))
        executor = build_executor(spec.executor, meter, client)
        agent = ProviderAgent(
            client,
            executor,
            meter,
            time.time,
            reading_interval_s=spec.reading_interval_s,
            pools=set(spec.pools) if spec.pools is not None else None,
            name=spec.name,
        )
        client.get("/me")  # a bad key or a server that is down fails here, clearly
    except SuanguError as err:
        fail(err)
    console = Console(stderr=True)
    console.print(f"agent {agent.instance}: {spec.executor.kind} executor, {spec.meter.kind} meter")
    try:
        while True:
            s = agent.tick()
            for line in s.errors:
                console.print(f"[yellow]warning:[/] {escape(line)}")
            if once:
                break
            time.sleep(spec.poll_s)
    except KeyboardInterrupt:
        agent.stop()
    finally:
        client.close()
