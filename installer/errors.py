"""Errors the CLI turns into a clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field


class SfpError(Exception):
    """An error the operator can act on: `message` says what is wrong, `hint` what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  → {self.hint}"


@dataclass(frozen=True)
class Problem:
    """One finding of validation: where (a dotted field path) and what to do."""

    where: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return text if not self.hint else f"{text} → {self.hint}"


@dataclass
class ConfigError(SfpError):
    """The inventory is invalid. Carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = 2

    def __init__(self, problems: list[Problem], source: str = "inventory") -> None:
        self.problems = problems
        lines = [f"{source} is invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines), "fix the fields named above and run the command again; no host was changed")


class PlaybookFailed(SfpError):
    exit_code = 3


class UsageError(SfpError):
    """Arguments that name nothing the command can act on (exit 2, like a click usage error)."""

    exit_code = 2
