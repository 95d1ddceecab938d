"""Install `podlab-cni` into a CNI bin dir, as a runtime's node would have it.

The plugin is the Go program in cmd/podlab-cni, which `make setup` builds beside the
interpreter (`.venv/bin/podlab-cni`); a runtime starts it once per pod, in ~3 ms.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from podlab.lab.errors import LabError

BUILT = Path(sys.executable).parent / "podlab-cni"


def install_plugin(bin_dir: Path) -> Path:
    """Copy the built plugin to `bin_dir/podlab-cni` (idempotent, atomic); its path."""
    if not BUILT.is_file():
        raise LabError(f"podlab-cni is not built at {BUILT}: run `make setup` (it needs Go)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "podlab-cni"
    if not path.exists() or path.read_bytes() != BUILT.read_bytes():
        tmp = bin_dir / ".podlab-cni.tmp"
        shutil.copyfile(BUILT, tmp)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path
