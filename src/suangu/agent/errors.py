"""Errors of the provider agent."""

from __future__ import annotations

from suangu.core.errors import SuanguError


class AgentError(SuanguError):
    """A bad agent configuration, or an executor or meter that cannot work here."""

    code = "agent"
