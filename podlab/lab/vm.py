"""Run a script as root in a VM booted on Debian's 6.1 kernel, for datapaths this host's
kernel lacks (ipvlan). virtme-ng boots it on a read-only view of this machine's root in
about ten seconds without KVM; `make setup` unpacks the kernel into the cache.

The guest's console is not a reliable channel, so the script's output and exit code come
back through a shared read-write directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from podlab.lab.errors import LabError


def kernel_dir() -> Path:
    return Path(os.environ.get("PODLAB_CACHE", "/opt/podlab")) / "vmkernel"


@dataclass(frozen=True)
class VmResult:
    returncode: int
    output: str


def missing() -> str | None:
    """Why a VM cannot be booted here, or None."""
    release = kernel_dir() / "release"
    if not release.is_file():
        return f"no VM kernel in {kernel_dir()} (run `make setup`)"
    vng = Path(sys.executable).parent / "vng"
    if not vng.exists():
        return "virtme-ng (vng) is not installed in this environment"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed"
    return None


def run_in_vm(script: str, timeout: float = 180.0, memory: str = "1G") -> VmResult:
    """Run a shell script in the VM as root, with the VM kernel's modules loadable."""
    if why := missing():
        raise LabError(f"cannot boot the VM: {why}")
    release = (kernel_dir() / "release").read_text().strip()
    root = kernel_dir() / "root"
    with tempfile.TemporaryDirectory(prefix="podlab-vm-") as shared:
        wrapped = (
            f"mount --bind {shlex.quote(str(root / 'lib/modules'))} /lib/modules; "
            f"( {script} ) > {shared}/output 2>&1; echo $? > {shared}/rc"
        )
        vng = Path(sys.executable).parent / "vng"
        env = {**os.environ, "PATH": f"{vng.parent}:{os.environ.get('PATH', '')}"}
        proc = subprocess.run(
            [str(vng), "--run", str(root / "boot" / f"vmlinuz-{release}"), "--disable-kvm",
             "--force-9p", "--memory", memory, "--rwdir", shared, "--exec", wrapped],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
            cwd=shared,
        )
        rc_file = Path(shared) / "rc"
        if not rc_file.exists():
            raise LabError(f"the VM did not run the script (vng exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
        return VmResult(int(rc_file.read_text()), (Path(shared) / "output").read_text())
