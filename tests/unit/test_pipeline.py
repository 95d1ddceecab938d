"""A teardown runs every step even when some fail, and reports each failure; a start that
fails closes what it opened, last first, and keeps its own error."""

from __future__ import annotations

import pytest

from podlab.lab.pipeline import TeardownError, Undo, run_all, unwound_on_failure


def _fail(message: str) -> None:
    raise RuntimeError(message)


def test_every_step_runs_and_each_failure_is_named() -> None:
    ran: list[str] = []
    with pytest.raises(TeardownError) as raised:
        run_all([("stop a", lambda: _fail("a broke")), ("stop b", lambda: ran.append("b")),
                 ("stop c", lambda: _fail("c broke"))])
    assert ran == ["b"]
    assert [what for what, _ in raised.value.failures] == ["stop a", "stop c"]
    assert "stop a: RuntimeError('a broke')" in str(raised.value)
    assert "stop c: RuntimeError('c broke')" in str(raised.value)


def test_nested_teardown_failures_are_listed_flat() -> None:
    inner = Undo()
    inner.push("stop the API", lambda: _fail("port busy"))
    with pytest.raises(TeardownError) as raised:
        run_all([("stop the control plane", inner.close), ("stop the cloud", lambda: None)])
    assert [what for what, _ in raised.value.failures] == ["stop the API"]


def test_ctrl_c_in_a_step_lets_the_others_run_then_is_raised() -> None:
    ran: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_all([("a", interrupted), ("b", lambda: ran.append("b"))])
    assert ran == ["b"]


def test_undo_closes_last_first_and_only_once() -> None:
    closed: list[str] = []
    undo = Undo()
    for name in ("servers", "controllers"):
        undo.push(f"stop the {name}", lambda name=name: closed.append(name))  # type: ignore[misc]
    undo.close()
    undo.close()
    assert closed == ["controllers", "servers"]


def test_a_failed_start_is_unwound_and_keeps_its_error_with_the_teardowns_as_a_note() -> None:
    undo = Undo()
    closed: list[str] = []
    undo.push("stop the API", lambda: _fail("port busy"))
    undo.push("stop the scheduler", lambda: closed.append("scheduler"))
    with pytest.raises(ValueError, match="step 3 failed") as raised, \
            unwound_on_failure(undo.close):
        raise ValueError("step 3 failed")
    assert closed == ["scheduler"]
    assert raised.value.__notes__ == [
        "teardown failed in 1 step(s): stop the API: RuntimeError('port busy')"]
