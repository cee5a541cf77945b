"""Errors of the simulation package.

A bad scenario or order file raises :class:`ScenarioError`, a
:class:`~suangu.core.errors.ValidationError` that also names the file and line, so the CLI can
print one line such as ``east_west.yaml:42: offers[3].gpus: must be >= 0, got -4 (...)``.
A broken market rule found while simulating raises :class:`SimulationError`: that is a bug.
"""

from __future__ import annotations

from suangu.core.errors import SuanguError, ValidationError


class ScenarioError(ValidationError):
    """A scenario or order file is missing, malformed or inconsistent."""

    code = "invalid_scenario"

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        super().__init__(message, field=field, fix=fix)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {ValidationError.__str__(self)}"


class SimulationError(SuanguError):
    """The simulation found a clearing or ledger result that breaks a rule (a bug)."""

    code = "simulation_bug"
