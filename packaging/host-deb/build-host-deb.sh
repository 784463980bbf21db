#!/usr/bin/env bash
# Builds build/deb/flinch_<version>_amd64.deb, the harness for a QA host or a Xen dom0, offline with dpkg-deb: a Node
# application under /usr/lib/flinch (dist/, the production node_modules with their native addons as built here, the
# lab's guest files and the agent executable the lab puts in its guests), the Node 20 runtime it was built with
# (Debian 12's nodejs is 18), /usr/bin/flinch, a man page, copyright and changelog. Needs: npm run build done.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=packaging/host-deb
. packaging/deb/package-steps.sh
for need in dist/harness/cli.js build/sea/flinch-agent; do
  [ -f "$need" ] || { echo "build-host-deb: $need is missing; run npm run build first" >&2; exit 1; }
done
version=$(node -p "require('./package.json').version")
arch=$(dpkg --print-architecture)
out=build/deb
root="$out/host-root"
lib="$root/usr/lib/flinch"
rm -rf "$root"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$lib" "$root/usr/share/doc/flinch" "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides"

# The application: compiled JavaScript without its source maps (they point at sources the package does not ship), and
# without the agent's own layers (agent/, probes/), which the harness never imports: guests get the agent executable.
(cd dist && find contract system harness -name '*.js' -print0 | cpio -0 -pdm --quiet "../$lib/dist")
for file in harness/lab/guest/init.sh harness/lab/guest/firewall.nft harness/lab/xen/dom0/dom0-init.sh \
  harness/lab/xen/dom0/domu-console.pl harness/lab/xen/dom0/migrate-transport.sh build/sea/flinch-agent; do
  mode=0644; [ -x "$file" ] && mode=0755
  install -D -m "$mode" "$file" "$lib/$file"
done
# projectRoot() finds the application by this manifest's name; "type": "module" makes dist/'s .js files ES modules.
node -e 'const p=require("./package.json"); process.stdout.write(JSON.stringify({name:p.name,version:p.version,private:true,type:"module",license:"GPL-2.0-or-later"},null,2)+"\n")' > "$lib/package.json"

# The production dependencies as npm resolved them, native addons included (built or fetched for this Node's ABI).
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' | while read -r dir; do
  install -d "$lib/$dir"
  (cd "$dir" && find . -maxdepth 1 -mindepth 1 ! -name node_modules -print0 | xargs -0 -I{} cp -a {} "$OLDPWD/$lib/$dir/")
done
# What only building or reading them needs: the SQLite sources and build tree (the addon is kept), type declarations,
# maps, docs, and a test extension.
sqlite="$lib/node_modules/better-sqlite3"
rm -rf "$sqlite/deps" "$sqlite/src" "$sqlite/binding.gyp"
find "$sqlite/build" -mindepth 1 ! -path "$sqlite/build/Release" ! -path "$sqlite/build/Release/better_sqlite3.node" -exec rm -rf {} + 2>/dev/null || true
find "$lib/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -iname '*.md' -o -iname '*.markdown' \
  -o -name '.npmignore' -o -name '.git*' -o -name '.eslintrc*' -o -name '.travis.yml' -o -name '.github' -o -name 'tsconfig*.json' -o -name '*.ts' \) -prune -exec rm -rf {} +
# netlink carries prebuilt addons for every platform; this package is for one.
find "$lib/node_modules/netlink/prebuilds" -mindepth 1 -maxdepth 1 ! -name "linux-$(node -p process.arch)" -exec rm -rf {} +
find "$lib/node_modules" -name '*.node' -exec strip --strip-unneeded {} +
# Scripts are run by the shipped runtime, never by a shebang: `#!/usr/bin/env node` would name a node the package
# does not depend on (dependencies' command-line tools, the entry point), so the line goes.
grep -rlZ --include='*.js' --include='*.mjs' --include='*.cjs' -E '^#! ?/usr/bin/env node' "$lib/dist" "$lib/node_modules" | xargs -0 -r sed -i '1{/^#!/d}'
find "$lib" -type d -exec chmod 0755 {} +
find "$lib/node_modules" -type f -exec chmod 0644 {} +
strip -o "$lib/node" "$(command -v node)"
chmod 0755 "$lib/node"

cat > "$root/usr/bin/flinch" <<'WRAPPER'
#!/bin/sh
# flinch: the harness, run by the Node runtime shipped beside it (the system's nodejs may be older than it needs).
exec /usr/lib/flinch/node /usr/lib/flinch/dist/harness/cli.js "$@"
WRAPPER
chmod 0755 "$root/usr/bin/flinch"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/flinch"
package_docs "$root" flinch "$version" "$here/flinch.1"
# Two builds of one commit give the same package: every file dated by the commit.
stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
find "$root" -exec touch -h -d "@$stamp" {} +
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: flinch
Version: $version
Architecture: $arch
Maintainer: flinch developers <flinch@lists.example.org>
Installed-Size: $installed_kib
Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1, iproute2
Recommends: qemu-system-x86, qemu-utils, libvirt-clients, nftables, tcpdump, hping3, genisoimage
Suggests: flinch-agent, libvirt-daemon-system, debootstrap, busybox-static, cpio, zstd, kmod
Section: admin
Priority: optional
Homepage: https://flinch.example.org/
Description: measure whether virtual machines notice their live migrations
 flinch drives live migrations through the hypervisors' own tools (QEMU QMP,
 libvirt, Xen xl), injects faults, measures the guest's blackout and pause
 from outside, collects the reports of the flinch-agent running in each
 guest, and writes reports for people and CI (table, JUnit, TAP, HTML).
 .
 It runs fleet collectors (authenticated agents, SQLite store, Prometheus
 metrics), enrols guests (keys, agent.yaml, cloud-init seeds), and upgrades a
 running QEMU in place to another QEMU binary by a same-host live migration.
 .
 The application and the Node.js runtime it needs are under /usr/lib/flinch.
CONTROL
package_build "$root" "$out/flinch_${version}_${arch}.deb" 1 "$installed_kib"
