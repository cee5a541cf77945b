"""Errors of the pure core.

Every error names what is wrong (``field``) and how to fix it (``fix``), so that the edges
(CLI, API) can show it to a person without a stack trace.
"""

from __future__ import annotations


class SuanguError(Exception):
    """Base of every error Suangu raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.field = field
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.fix:
            text += f" ({self.fix})"
        return text


class ValidationError(SuanguError, ValueError):
    """An input value is out of range, malformed or inconsistent."""

    code = "invalid"

    def prefixed(self, prefix: str) -> ValidationError:
        """The same error with ``prefix`` in front of the field (for nested objects)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return ValidationError(self.message, field=field, fix=self.fix)


class UnknownReferenceError(ValidationError):
    """An object refers to another one that does not exist (unknown pool, site, GPU class)."""

    code = "unknown_reference"


class SolverError(SuanguError):
    """The optimisation solver failed in a way that is not a property of the market."""

    code = "solver_error"
