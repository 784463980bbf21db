#!/usr/bin/env bash
# Builds flinch-agent as a Node single executable application (node --experimental-sea-config + postject, both
# offline): one bundle with every dependency, the netlink addon as an SEA asset, injected into a stripped copy of
# this machine's node. Output: build/sea/flinch-agent. Needs: npm ci done, binutils (strip).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/sea
mkdir -p "$out"
# ws probes for its optional native helpers with require(); a SEA can only require built-ins, so tell ws not to look.
# Minified: the running agent keeps its whole source resident for as long as it runs (the blob's pages), so every
# byte of it is paid on every guest; 1.38 MB of source with only whitespace and comments dropped, 0.99 MB minified.
# Dropping the comments matters twice: one character beyond Latin-1 in any comment (a "−" or "…") makes V8 keep the
# whole source as a two-byte string. --keep-names keeps functions' and classes' names, so stack traces and
# error.name still say what failed.
npx esbuild agent/cli.ts --bundle --platform=node --target=node20 --format=cjs --log-level=warning --minify --keep-names \
  --banner:js="process.env.WS_NO_BUFFER_UTIL='1';process.env.WS_NO_UTF_8_VALIDATE='1';" \
  --alias:node-gyp-build=./packaging/sea/netlink-addon-loader.cjs \
  --external:bufferutil --external:utf-8-validate --outfile="$out/flinch-agent-sea.cjs"
cat > "$out/sea-config.json" <<JSON
{
  "main": "$out/flinch-agent-sea.cjs",
  "output": "$out/sea-prep.blob",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": false,
  "assets": { "netlink.node": "node_modules/netlink/prebuilds/linux-x64/node.napi.node" }
}
JSON
node --experimental-sea-config "$out/sea-config.json" >/dev/null 2>"$out/sea-config.log" || { cat "$out/sea-config.log" >&2; exit 1; }
strip -o "$out/flinch-agent" "$(command -v node)"
# postject narrates its progress and warns about ELF notes it does not need; keep its words for when it fails.
npx postject "$out/flinch-agent" NODE_SEA_BLOB "$out/sea-prep.blob" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$out/postject.log" 2>&1 || { cat "$out/postject.log" >&2; exit 1; }
chmod 0755 "$out/flinch-agent"
echo "$out/flinch-agent $(stat -c %s "$out/flinch-agent") bytes"
