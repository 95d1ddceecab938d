"""Bringing something up as named steps, and tearing it down step by step.

A start is a list of `Step`s (kind's actions) that tests can list and fail one by one. Each
step pushes on its owner's `Undo` how to close what it opened, so a failure at any step
closes exactly what was opened, last first. A teardown runs every step even when one
fails, then reports all failures at once: a teardown that stops at its first error leaks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from podlab.lab.errors import LabError

Teardown = tuple[str, Callable[[], object]]  # what it does, for the report; how


@dataclass(frozen=True)
class Step:
    id: str  # stable, so a test can fail the start at this step
    title: str  # what the user reads once it is done
    run: Callable[[], None]


class TeardownError(LabError):
    """Some teardown steps failed; every other step still ran."""

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        self.failures = failures
        super().__init__(f"teardown failed in {len(failures)} step(s): "
                         + "; ".join(f"{what}: {e!r}" for what, e in failures))


def run_all(steps: Iterable[Teardown]) -> None:
    """Run every step; then raise one TeardownError naming each that failed. Ctrl-C does
    not stop the rest either: it is raised again once they have run."""
    failures: list[tuple[str, BaseException]] = []
    for what, close in steps:
        try:
            close()
        except TeardownError as e:
            failures += e.failures
        except BaseException as e:
            failures.append((what, e))
    interrupt = next((e for _, e in failures if not isinstance(e, Exception)), None)
    if interrupt is not None:
        raise interrupt
    if failures:
        raise TeardownError(failures)


class Undo:
    """How to close what a start opened, closed last first."""

    def __init__(self) -> None:
        self._steps: list[Teardown] = []

    def push(self, what: str, close: Callable[[], object]) -> None:
        self._steps.append((what, close))

    def close(self) -> None:
        steps, self._steps = self._steps[::-1], []
        run_all(steps)


@contextmanager
def unwound_on_failure(close: Callable[[], object]) -> Iterator[None]:
    """On any failure, Ctrl-C included, `close` and re-raise the failure, with what the
    teardown could not do added to it as a note."""
    try:
        yield
    except BaseException as e:
        try:
            close()
        except TeardownError as failed:
            e.add_note(str(failed))
        raise
