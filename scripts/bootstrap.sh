#!/bin/sh
# Installs what Corral needs on a Debian or Ubuntu machine that has Node.js, git and apt: the Debian
# packages (QEMU, image tools, compilers for native npm modules), then the npm packages. Idempotent: a second
# run only checks. Used by `./corral up`, `npm test` and `npm run bench`; `--for-tests` (npm test) adds what
# only the tests need.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)

# qemu-system-x86, qemu-utils: the hypervisor and qemu-img; busybox-static, tini, e2fsprogs, dropbear-bin: the
# base image; iproute2, cpio: networking and archives; nftables: the wall between guests and the host's own
# services (the daemon refuses to start without it unless told otherwise); openssh-client: ssh into VMs;
# python3, make, g++: native npm modules (better-sqlite3, node-pty); patchelf, kmod: the guest runtime (node
# pointed at its own loader and libraries; depmod for the kernel's modules in every image); mmdebstrap: the
# debian image, from Debian's archive; skopeo: OCI imports and registry pulls; libvirt-clients: `virsh`, how the
# controller reaches libvirt hosts (qemu:///system, qemu+ssh://…).
PACKAGES="qemu-system-x86 qemu-utils busybox-static tini e2fsprogs dropbear-bin cpio iproute2 nftables openssh-client ca-certificates python3 make g++ patchelf kmod mmdebstrap skopeo libvirt-clients"
# docker-registry: the local registry the image tests start on 127.0.0.1 with a configuration of their own.
# libvirt-daemon-system: the libvirt host the controller's libvirt tests manage; openssh-server: the key-only
# sshd those tests start on 127.0.0.1 for qemu+ssh:// URIs. Only for the tests: Debian's packages also start
# services (a registry open on port 5000, sshd on port 22), which a host that merely runs Corral must not get:
# they are stopped and disabled below.
TEST_PACKAGES="docker-registry libvirt-daemon-system openssh-server"
if [ "${1:-}" = "--for-tests" ]; then PACKAGES="$PACKAGES $TEST_PACKAGES"; fi

missing=""
for package in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done
if [ -n "$missing" ]; then
  echo "corral: installing Debian packages:$missing"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "corral: need root (or sudo) to install:$missing" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
  case "$missing" in
    *docker-registry*) $sudo systemctl disable --now docker-registry.service >/dev/null 2>&1 || true ;;
  esac
  case "$missing" in
    *openssh-server*) $sudo systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true ;;
  esac
else
  echo "corral: Debian packages are installed"
fi

cd "$here"
if [ ! -e package-lock.json ]; then
  # An installed package (npm install -g): npm installed its packages with it; there is nothing to pin here.
  echo "corral: npm packages come with the installed package"
else
  # node_modules is current when it was installed from a package-lock.json with the same content: a stamp of
  # its hash, written after each install. A file's time alone says nothing in a fresh clone or a second
  # worktree (every file is new there), and an `npm ci` run on that evidence through a node_modules linked
  # from another checkout would empty that checkout's packages.
  lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
  stamp=node_modules/.corral-lock.sha256
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
    echo "corral: npm packages are installed"
  elif [ ! -f "$stamp" ] && [ -e node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
    # Installed before the stamp existed, from this lockfile or an older copy of it.
    echo "$lock_sum" >"$stamp"
    echo "corral: npm packages are installed"
  elif [ -L node_modules ]; then
    echo "corral: node_modules links to $(readlink -f node_modules), installed from another package-lock.json;" >&2
    echo "corral: npm ci would replace that checkout's packages: remove the link, or run npm ci there" >&2
    exit 1
  else
    echo "corral: installing npm packages (npm ci; native modules compile, about a minute)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_sum" >"$stamp"
  fi
fi
