"""Install `podlab-cni` into a CNI bin dir as a launcher that starts in ~25 ms.

A runtime starts the plugin once per pod. Through the console script, the interpreter
spends ~110 ms importing site-packages (.pth hooks, the editable-install finder) that the
stdlib-only plugin never uses; the launcher runs Python with `-S` and puts only podlab's
own directory on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import podlab

LAUNCHER = """#!{python} -S
# podlab-cni: written by podlab.cni.install; the plugin needs only the standard library.
import sys
sys.path.insert(0, {root!r})
from podlab.cni.plugin import main
sys.exit(main())
"""


def install_plugin(bin_dir: Path) -> Path:
    """Write the launcher as `bin_dir/podlab-cni` (idempotent); its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "podlab-cni"
    root = str(Path(podlab.__file__).resolve().parents[1])
    text = LAUNCHER.format(python=sys.executable, root=root)
    if not path.exists() or path.read_text() != text:
        tmp = bin_dir / ".podlab-cni.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path
