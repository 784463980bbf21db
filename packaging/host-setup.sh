#!/usr/bin/env bash
# Prepares a Debian 12 host for flinch: the system packages the lab and the tests drive, the npm dependencies, and the
# build. Idempotent and quick when everything is already there. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# lintian checks the .deb; debootstrap and e2fsprogs build the systemd guest that the package is installed into;
# xmllint checks JUnit output against its XSD; chromium opens the HTML report in the tests; libvirt is the libvirt
# driver's real counterpart (its test starts libvirtd by hand where no systemd does).
PACKAGES=(qemu-system-x86 iproute2 nftables iptables busybox-static kmod cpio zstd binutils procps iputils-arping ndisc6
  lintian debootstrap e2fsprogs libxml2-utils chromium libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
# The lab resolves the guest kernel through the archive's package lists; a fresh machine may have none yet.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache depends linux-image-cloud-amd64 2>/dev/null | grep -q 'Depends: linux-image'; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "flinch setup: needs root to install: ${missing[*]:-(package lists)}" >&2
    exit 1
  fi
  echo "flinch setup: apt-get update${missing:+ and install ${missing[*]}}" >&2
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "flinch setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

newest_source=$(find agent probes harness packaging/sea packaging/deb package.json tsconfig.json -newer dist/.built -print -quit 2>/dev/null || echo rebuild)
if [ ! -f dist/.built ] || [ ! -f build/agent/flinch-agent.cjs ] || [ ! -f build/sea/flinch-agent ] || ! ls build/deb/flinch-agent_*.deb >/dev/null 2>&1 || [ -n "$newest_source" ]; then
  echo "flinch setup: npm run build" >&2
  npm run --silent build
  touch dist/.built
fi
