// Which parts of the node binary an idle agent keeps in memory, against a bare node: the resident pages of the
// executable's mapping (/proc/PID/pagemap, root only), each attributed to the symbol it lies in (`nm` of the
// unstripped /usr/bin/node; the single-file agent is a stripped copy of it, its loaded segments at the same addresses).
//
//   npm run build && node --import ./bench/register-ts.mjs bench/agent-pages.ts [SECONDS]
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { guestAgentExecutable } from '../harness/project-paths.js';

const settleSeconds = Number(process.argv[2] ?? 30);
const PAGE = 4096;

/** Symbol prefixes to the part of node they belong to; the first that matches wins. */
const PARTS: Array<[RegExp, string]> = [
  [/^v8::internal::compiler::turboshaft/, 'V8 TurboFan (optimizing compiler)'], [/^v8::internal::compiler/, 'V8 TurboFan (optimizing compiler)'],
  [/^v8::internal::maglev/, 'V8 Maglev'], [/^v8::internal::wasm/, 'V8 WebAssembly'], [/^Builtins_/, 'V8 builtins'],
  [/^v8::internal::interpreter/, 'V8 interpreter'], [/^v8::/, 'V8, the rest'],
  [/^icu_|^u[a-z]+_\w+_7\d$/, 'ICU'], [/^(ossl_|OPENSSL|EVP_|SSL_|CRYPTO|BN_|X509|ASN1|RSA_|EC_)/, 'OpenSSL'],
  [/^node::/, 'node'], [/^uv_/, 'libuv'], [/^(ares_|cares)/, 'c-ares'], [/^(nghttp|llhttp)/, 'HTTP parsers'],
  [/^(inflate|deflate|crc32|adler32|Brotli|brotli)/, 'zlib, brotli'],
];

function symbols(): { addresses: number[]; parts: string[] } {
  const nm = spawnSync('nm', ['-n', '-C', '--defined-only', '/usr/bin/node'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (nm.status !== 0) throw new Error(`nm /usr/bin/node: ${nm.stderr.trim()}`);
  const addresses: number[] = [];
  const parts: string[] = [];
  for (const line of nm.stdout.split('\n')) {
    const match = /^([0-9a-f]+) [tTrRdDbBwW] (.+)$/.exec(line);
    if (!match) continue;
    addresses.push(parseInt(match[1]!, 16));
    parts.push(PARTS.find(([pattern]) => pattern.test(match[2]!))?.[1] ?? 'other code and data');
  }
  return { addresses, parts };
}

/** Resident KiB of `executable`'s mappings in process `pid`, by part. */
function residentByPart(pid: number, executable: string, table: ReturnType<typeof symbols>): Map<string, number> {
  const byPart = new Map<string, number>();
  const pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
  const entry = Buffer.alloc(8);
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const fields = line.trim().split(/\s+/);
      if (fields[5] !== executable) continue;
      const [low, high] = fields[0]!.split('-').map((hex) => parseInt(hex, 16)) as [number, number];
      for (let address = low; address < high; address += PAGE) {
        readSync(pagemap, entry, 0, 8, (address / PAGE) * 8);
        if ((entry.readBigUInt64LE() >> 63n) === 0n) continue;
        // The last symbol at or below the address (binary search).
        let lo = 0;
        let hi = table.addresses.length - 1;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (table.addresses[mid]! <= address) lo = mid;
          else hi = mid - 1;
        }
        const part = table.addresses[lo]! <= address && address - table.addresses[lo]! < 1 << 22 ? table.parts[lo]! : 'no symbol (read-only data, the SEA blob)';
        byPart.set(part, (byPart.get(part) ?? 0) + PAGE / 1024);
      }
    }
  } finally {
    closeSync(pagemap);
  }
  return byPart;
}

const table = symbols();
const netns = `flinch-pages-${process.pid}`;
const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-pages-'));
spawnSync('ip', ['netns', 'add', netns]);
spawnSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
const agent = spawn('ip', ['netns', 'exec', netns, guestAgentExecutable(), 'run', '--remediate', 'on', '--state-dir', stateDir], { stdio: 'ignore' });
const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 500); setInterval(() => {}, 1000); setInterval(() => {}, 15000)'], { stdio: 'ignore' });
try {
  await sleep(settleSeconds * 1000);
  const agentPages = residentByPart(agent.pid!, guestAgentExecutable(), table);
  const barePages = residentByPart(bare.pid!, '/usr/bin/node', table);
  const parts = [...new Set([...agentPages.keys(), ...barePages.keys()])].sort((a, b) => ((agentPages.get(b) ?? 0) - (barePages.get(b) ?? 0)) - ((agentPages.get(a) ?? 0) - (barePages.get(a) ?? 0)));
  const sum = (m: Map<string, number>) => [...m.values()].reduce((s, v) => s + v, 0);
  console.log(`resident pages of the executable after ${settleSeconds} s idle (KiB): agent (single file) | bare node | difference`);
  for (const part of parts) console.log(`  ${part}: ${agentPages.get(part) ?? 0} | ${barePages.get(part) ?? 0} | ${(agentPages.get(part) ?? 0) - (barePages.get(part) ?? 0)}`);
  console.log(`  total: ${sum(agentPages)} | ${sum(barePages)} | ${sum(agentPages) - sum(barePages)}`);
} finally {
  agent.kill('SIGTERM');
  bare.kill('SIGTERM');
  await sleep(500);
  spawnSync('ip', ['netns', 'del', netns]);
  rmSync(stateDir, { recursive: true, force: true });
}
