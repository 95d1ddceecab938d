#!/usr/bin/env bash
# Idempotent setup for a Debian 12 machine, run as root by `make setup`.
# Installs only what is missing and says what it installs; a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

debs=(
  iproute2 iptables nftables procps kmod
  python3-venv python3-bpfcc bpftool clang llvm libbpf-dev
  dnsutils iputils-ping tcpdump ethtool
  containernetworking-plugins golang-go golang-github-appc-cni-dev
  qemu-system-x86 busybox-static
  unbound
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi

# kubectl drives the lab's Kubernetes API: Google's package where its repository is
# configured (v1.32 on the reference machine), else Debian's own client.
if ! command -v kubectl >/dev/null; then
  say "installing kubectl"
  apt_install kubectl || apt_install kubernetes-client
fi

# bcc compiles tc programs against kernel headers; link Debian's when the running kernel has none.
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build/include" ]; then
  if ! compgen -G '/usr/src/linux-headers-*-amd64' >/dev/null; then
    say "installing linux-headers-amd64 (the running kernel $(uname -r) ships no headers)"
    apt_install linux-headers-amd64
  fi
  build=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1)
  source=${build%-amd64}-common
  say "linking $kdir/build -> $build and $kdir/source -> $source"
  mkdir -p "$kdir"
  ln -sfn "$build" "$kdir/build"
  ln -sfn "$source" "$kdir/source"
fi

# A second kernel (Debian's 6.1, which has ipvlan) for virtme-ng; unpacked, never installed.
# Not under /var: virtme-ng's guest does not see the host's /var.
vmdir="${PODLAB_CACHE:-/opt/podlab}/vmkernel"
if [ ! -s "$vmdir/release" ]; then
  if [ "$apt_updated" = 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  say "unpacking $pkg into $vmdir for the kernel VM"
  rm -rf "$vmdir" && mkdir -p "$vmdir/root"
  (cd "$vmdir" && apt-get download -q "$pkg" >/dev/null)
  dpkg-deb -x "$vmdir"/*.deb "$vmdir/root"
  rm -f "$vmdir"/*.deb
  release=$(ls "$vmdir/root/lib/modules" | head -n 1)
  depmod -b "$vmdir/root" "$release"
  echo "$release" > "$vmdir/release"
fi

# The virtualenv sees the system site packages so that Debian's bcc imports.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv from /usr/bin/python3 with system site packages"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  say "installing podlab and its test dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
# podlab-cni is compiled: a runtime starts it once per pod (docs/agent.md has the figures).
plugin=.venv/bin/podlab-cni
if [ ! -x "$plugin" ] || [ -n "$(find cmd/podlab-cni -newer "$plugin" -print -quit)" ]; then
  say "building $plugin from cmd/podlab-cni"
  (cd cmd/podlab-cni && GOCACHE="${GOCACHE:-${PODLAB_CACHE:-/opt/podlab}/go-build}" \
    CGO_ENABLED=0 go build -trimpath -o "../../$plugin" .)
fi
say "ready"
