"""Capability markers skip with the capability's name, and fail under strict mode."""

from __future__ import annotations

import pytest

TEST = """
import pytest

@pytest.mark.kernel("imaginary")
def test_needs_it():
    pass
"""
CONFTEST = """
from podlab.lab import capabilities
capabilities.PROBES["imaginary"] = lambda: "this machine has no imaginary links"
capabilities.missing.cache_clear()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PODLAB_STRICT", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST)
    return pytester


def test_missing_capability_skips_with_its_name(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*missing capability 'imaginary'*no imaginary links*"])


def test_strict_mode_fails_instead(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--podlab-strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*strict mode: missing capability 'imaginary'*"])


def test_strict_mode_from_the_environment(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODLAB_STRICT", "1")
    suite.runpytest().assert_outcomes(errors=1)
