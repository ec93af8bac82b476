"""Findings of an SSO validation: every problem at once, each with what to do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from installer.errors import SfpError

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem found while validating an identity provider (IdP)."""

    level: Level
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.level}: {self.message}"
        return text if not self.hint else f"{text} → {self.hint}"


@dataclass
class Findings:
    """A list of findings with helpers; validation results embed one."""

    items: list[Finding] = field(default_factory=list)

    def error(self, message: str, hint: str | None = None) -> None:
        self.items.append(Finding("error", message, hint))

    def warning(self, message: str, hint: str | None = None) -> None:
        self.items.append(Finding("warning", message, hint))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.items if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.items if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self, subject: str) -> None:
        """Raise one SfpError that lists every error (and warning) found for `subject`."""
        if self.ok:
            return
        lines = [f"{subject} failed validation ({len(self.errors)} error{'s' if len(self.errors) != 1 else ''}):"]
        lines += [f"  - {f}" for f in self.items]
        raise SfpError("\n".join(lines), "fix the IdP configuration named above (or ask the IdP's administrator) and run again")
