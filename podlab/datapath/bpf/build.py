"""Compiling the C sources once per content: `clang -O2 -g -target bpf`, cached by hash.

The cache key covers every source and header here and the flags, so an edit recompiles
and nothing else does: a start-up with a warm cache runs no compiler at all. Concurrent
builders each write a temporary file and rename it into place: a reader sees a whole
object or none.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from podlab.datapath.model import DatapathError

SOURCES = Path(__file__).resolve().parent
OBJECTS = ("tc_lb", "tc_policy", "sock_lb")
# linux-libc-dev's uapi headers and libbpf-dev's bpf_helpers.h; asm/ is per architecture.
FLAGS = ("-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
         f"-I/usr/include/{os.uname().machine}-linux-gnu")


class BuildError(DatapathError):
    """clang refused the sources; carries its output."""


def cache_dir() -> Path:
    return Path(os.environ.get("PODLAB_CACHE", "/opt/podlab")) / "bpf"


def source_hash() -> str:
    """Hash of the sources alone: what a pinned program set is tagged with."""
    digest = hashlib.sha256()
    for path in sorted(SOURCES.glob("*.[ch]")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build() -> dict[str, Path]:
    """Each object's path in the cache, compiling those missing (only on a cache miss)."""
    digest = hashlib.sha256(f"{source_hash()}\0{' '.join(FLAGS)}\0".encode())
    objects = {name: cache_dir() / f"{name}-{digest.hexdigest()[:16]}.o" for name in OBJECTS}
    missing = {name: path for name, path in objects.items() if not path.exists()}
    if missing:
        cache_dir().mkdir(parents=True, exist_ok=True)
    for name, path in missing.items():
        _compile(SOURCES / f"{name}.c", path)
    return objects


def _compile(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        try:
            proc = subprocess.run(["clang", *FLAGS, "-c", str(source), "-o", tmp],
                                  capture_output=True, text=True, check=False)
        except OSError as e:
            raise BuildError(f"clang is needed to build the eBPF programs: {e}") from e
        if proc.returncode != 0:
            raise BuildError(f"clang {source.name}: {proc.stderr.strip()}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
