#!/usr/bin/env bash
# Prepares a Debian 12 host for flinch: the system packages the lab and the tests drive, the npm dependencies, and the
# build. Idempotent and quick when everything is already there. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# lintian checks the .deb; debootstrap and e2fsprogs build the systemd guest that the package is installed into;
# xmllint checks JUnit output against its XSD; chromium opens the HTML report in the tests; libvirt is the libvirt
# driver's real counterpart (its test starts libvirtd by hand where no systemd does); perl's TAP::Parser reads
# results.tap as the oldest TAP consumer does; tcpdump and hping3 watch the lab bridge and measure agentless guests;
# genisoimage writes flinch enroll's cloud-init seed images (and its isoinfo reads them back in the tests); mmdebstrap,
# extlinux, syslinux-common and fdisk build the Debian cloud image a test boots as a user's own guest; xz-utils unpacks
# the compressed modules of newer Debian kernels; postgresql is the collectors' shared store (the tests run their own
# temporary clusters as the postgres user; the package's own cluster is not used).
PACKAGES=(postgresql qemu-system-x86 iproute2 nftables iptables busybox-static kmod cpio zstd xz-utils binutils procps iputils-arping ndisc6 tcpdump hping3 genisoimage
  qemu-utils lintian debootstrap mmdebstrap extlinux syslinux-common fdisk e2fsprogs libxml2-utils chromium libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu perl)

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

# Firewall managers the safety net is tested against (each only inside a test's own namespace, with its configuration
# overlaid there through /etc/netns): installed with their services held back by policy-rc.d, so that nothing of
# theirs starts on, or touches, this host's own firewall. stress-ng loads the host for the idle-soak benchmark.
MANAGERS=(ufw firewalld fail2ban stress-ng)
missing_managers=()
for pkg in "${MANAGERS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing_managers+=("$pkg")
done
if [ ${#missing_managers[@]} -gt 0 ]; then
  echo "flinch setup: install ${missing_managers[*]} (services not started)" >&2
  held_back=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# flinch setup: no service starts while the test firewall managers are installed\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    held_back=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_managers[@]}" >/dev/null || status=$?
  [ "$held_back" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "${status:-0}" -eq 0 ] || exit "$status"
fi
# netfilter-persistent conflicts with ufw, so it is not installed: its Debian packages are unpacked into a cache, and
# the tests run its own script from there (its PLUGINS directory pointed at the copy through its defaults file).
NFP_VERSION=$(apt-cache policy netfilter-persistent | sed -n 's/^ *Candidate: //p')
NFP_DIR=/var/cache/flinch/netfilter-persistent-${NFP_VERSION}
if [ -n "$NFP_VERSION" ] && [ ! -x "$NFP_DIR/usr/sbin/netfilter-persistent" ]; then
  echo "flinch setup: unpack netfilter-persistent $NFP_VERSION into $NFP_DIR" >&2
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq netfilter-persistent iptables-persistent 2>/dev/null)
  mkdir -p "$NFP_DIR.tmp"
  for deb in "$scratch"/*.deb; do dpkg -x "$deb" "$NFP_DIR.tmp"; done
  rm -rf "$scratch" "$NFP_DIR"
  mv "$NFP_DIR.tmp" "$NFP_DIR"
fi
# chrony is unpacked the same way, not installed: the lab guest runs it (flinch lab --guest-time-daemon chronyd) and
# the lab's namespace serves it time with a second chronyd that never touches this machine's clock (-x). Installed,
# its service would discipline the host's clock.
CHRONY_VERSION=$(apt-cache policy chrony | sed -n 's/^ *Candidate: //p')
CHRONY_DIR=/var/cache/flinch/chrony-${CHRONY_VERSION}
if [ -n "$CHRONY_VERSION" ] && [ ! -x "$CHRONY_DIR/usr/sbin/chronyd" ]; then
  echo "flinch setup: unpack chrony $CHRONY_VERSION into $CHRONY_DIR" >&2
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq chrony 2>/dev/null)
  mkdir -p "$CHRONY_DIR.tmp"
  for deb in "$scratch"/*.deb; do dpkg -x "$deb" "$CHRONY_DIR.tmp"; done
  rm -rf "$scratch" "$CHRONY_DIR"
  mv "$CHRONY_DIR.tmp" "$CHRONY_DIR"
fi

# Where no udev runs (containers, microVMs), /dev/kvm stays root's alone (0600), and libvirt 9 then re-probes QEMU on
# every call that looks at its capabilities: its probe finds KVM enabled, and its check that the cache is still valid
# asks whether libvirt-qemu may open /dev/kvm, which it may not (libvirtd's debug log: "KVM was enabled when probing
# ..., but it is not available now"). Each probe costs about 4 s per emulator, inside virsh start, save,
# restore and migrate, so a save/restore's pause measured 11.6 s instead of 2.6 s. Debian's udev gives the node to
# group kvm, mode 0660 (50-udev-default.rules); this does the same. The lab's guests stay on TCG: every QEMU flinch
# starts says accel=tcg, and every libvirt domain it or its tests define is of type 'qemu'.
if [ "$(id -u)" -eq 0 ] && [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
  echo "flinch setup: /dev/kvm to group kvm, mode 0660, as Debian's udev rule has it (no udev runs here)" >&2
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "flinch setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

newest_source=$(find agent probes harness packaging/sea packaging/deb packaging/host-deb package.json tsconfig.json -newer dist/.built -print -quit 2>/dev/null || echo rebuild)
if [ ! -f dist/.built ] || [ ! -f build/agent/flinch-agent.cjs ] || [ ! -f build/sea/flinch-agent ] || ! ls build/deb/flinch-agent_*.deb >/dev/null 2>&1 || ! ls build/deb/flinch_*.deb >/dev/null 2>&1 || [ -n "$newest_source" ]; then
  echo "flinch setup: npm run build" >&2
  npm run --silent build
  touch dist/.built
fi
