"""The eBPF objects are compiled once per content, and concurrent builders share the cache."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from podlab.datapath.bpf import build

pytestmark = pytest.mark.kernel("clang", "bpftool")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PODLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "bpf"


def compiles(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the clang runs."""
    runs: list[list[str]] = []
    real = subprocess.run

    def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if argv[0] == "clang":
            runs.append(argv)
        return real(argv, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", run)
    return runs


def test_a_warm_cache_runs_no_compiler(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = compiles(monkeypatch)
    first = build.build()
    assert len(runs) == len(build.OBJECTS)
    assert build.build() == first
    assert len(runs) == len(build.OBJECTS)
    assert {p.parent for p in first.values()} == {cache}


def test_an_edited_source_builds_a_new_object(cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "src"
    shutil.copytree(build.SOURCES, sources, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(build, "SOURCES", sources)
    before = build.build()
    (sources / "lb.h").write_text((sources / "lb.h").read_text() + "/* edited */\n")
    after = build.build()
    assert set(before.values()).isdisjoint(after.values())


def test_concurrent_builders_leave_whole_objects_and_no_temporaries(cache: Path) -> None:
    results: list[dict[str, Path]] = []
    threads = [threading.Thread(target=lambda: results.append(build.build())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in results[0].values())
    for obj in results[0].values():
        subprocess.run(["bpftool", "btf", "dump", "file", str(obj)], check=True,
                       capture_output=True)


def test_a_compile_error_is_reported_with_clang_output(cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "src"
    shutil.copytree(build.SOURCES, sources, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (sources / "tc_lb.c").write_text("this is not C\n")
    monkeypatch.setattr(build, "SOURCES", sources)
    with pytest.raises(build.BuildError, match=r"tc_lb\.c"):
        build.build()
    assert not any(cache.glob("tc_lb-*"))
