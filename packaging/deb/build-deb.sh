#!/usr/bin/env bash
# Builds build/deb/flinch-agent_<version>_amd64.deb with dpkg-deb, offline, from the single executable that
# packaging/sea/build-sea.sh made. Contents: /usr/bin/flinch-agent, the hardened unit (not enabled on install),
# /etc/flinch/agent.yaml (a conffile), /var/lib/flinch, a man page, copyright and changelog.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=packaging/deb
. packaging/deb/package-steps.sh
sea=build/sea/flinch-agent
[ -x "$sea" ] || { echo "build-deb: $sea is missing; run npm run package:sea first" >&2; exit 1; }
version=$(node -p "require('./package.json').version")
arch=$(dpkg --print-architecture)
out=build/deb
root="$out/root"
rm -rf "$root"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/flinch" \
  "$root/usr/share/doc/flinch-agent" "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides"
install -d -m 0700 "$root/var/lib/flinch"
install -m 0755 "$sea" "$root/usr/bin/flinch-agent"
install -m 0644 "$here/flinch-agent.service" "$root/lib/systemd/system/flinch-agent.service"
install -m 0644 "$here/agent.yaml" "$root/etc/flinch/agent.yaml"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/flinch-agent"
package_docs "$root" flinch-agent "$version" "$here/flinch-agent.1"
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$root/DEBIAN/$script"; done
echo /etc/flinch/agent.yaml > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: flinch-agent
Version: $version
Architecture: $arch
Maintainer: flinch developers <flinch@lists.example.org>
Installed-Size: $installed_kib
Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1, iproute2
Recommends: nftables | iptables, iputils-arping, ndisc6
Section: net
Priority: optional
Homepage: https://flinch.example.org/
Description: guest agent that notices live migrations and restores lost network state
 flinch-agent runs inside a virtual machine. It watches network links (rtnetlink
 carrier counters and IFLA_EVENT), addresses, routes, nftables and iptables
 rules, clocks, the kernel log and Xen's xenstore, groups what it sees into
 migration episodes and reports a verdict for each: transparent, noticed,
 disrupted or healed. Its safety net can re-apply firewall rules, addresses,
 routes and link state lost in an episode (dry-run by default).
 .
 The agent is one self-contained executable (Node.js single executable
 application). The systemd unit is hardened and not enabled on install.
CONTROL
package_build "$root" "$out/flinch-agent_${version}_${arch}.deb" 3 "$installed_kib"
