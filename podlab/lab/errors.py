"""Errors of the lab, each saying what failed and how to see more."""

from __future__ import annotations

from collections.abc import Sequence


class LabError(RuntimeError):
    """A lab could not be brought up, found or torn down."""


class CommandError(LabError):
    """A command the lab ran failed; carries the command and its output, as kind's errors do."""

    def __init__(self, argv: Sequence[str], code: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        output = (stderr or stdout).strip()
        super().__init__(f"command failed (exit {code}): {' '.join(self.argv)}\n{output}")
