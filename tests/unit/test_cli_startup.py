"""`podlab --help` and `podlab status` start fast because they import nothing but the
standard library and podlab's own light modules: the cloud SDK, the Kubernetes client and
pyroute2 (a second or more) load only in the commands that use them. Checked by what gets
imported, not by timing; tests/bench/test_cli_startup_bench.py prints the times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.fake_labs import fake_lab

# Runs a podlab command in this interpreter, then prints the top-level packages it loaded.
LOADED = """
import sys
from podlab.lab.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(*sorted({m.split(".")[0] for m in sys.modules}), file=sys.stderr)
"""


def loaded_by(*argv: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", LOADED, *argv], capture_output=True,
                          text=True, check=False, timeout=60)
    return set(proc.stderr.splitlines()[-1].split())


@pytest.mark.parametrize("argv", [["--help"], ["status", "--name", "fast", "--json"],
                                  ["status", "--name", "fast"]])
def test_only_the_standard_library_is_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    monkeypatch.setenv("PODLAB_RUN_DIR", str(tmp_path))
    fake_lab(tmp_path, "fast")
    bare = set(subprocess.run(
        [sys.executable, "-c", "import sys; print(*{m.split('.')[0] for m in sys.modules})"],
        capture_output=True, text=True, check=True).stdout.split())
    others = loaded_by(*argv) - bare - set(sys.stdlib_module_names) - {"podlab"}
    assert others == set()  # e.g. alibabacloud_*, Tea, kubernetes, pyroute2, jsonschema, yaml
