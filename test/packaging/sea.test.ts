// The single executable, as a fleet would copy it: built with `npm run package:sea`, run from an empty folder in a
// private namespace with no node_modules anywhere near and no node on PATH.
import t from 'tap';
import { copyFileSync, mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../system/run-command.js';
import { projectRoot } from '../../harness/project-paths.js';
import { ipIn, testNetns } from '../helpers/netns.js';

const PATH_WITHOUT_NODE = '/usr/sbin:/sbin';

t.test('the SEA runs with no node and no node_modules: snapshot, and a link flap seen over netlink', async (t) => {
  await runCommand('bash', [path.join(projectRoot(), 'packaging', 'sea', 'build-sea.sh')], { timeout: 300_000 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-sea-'));
  const binary = path.join(dir, 'flinch-agent');
  copyFileSync(path.join(projectRoot(), 'build', 'sea', 'flinch-agent'), binary);
  t.ok(statSync(binary).mode & 0o111, 'executable');
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const env = { PATH: PATH_WITHOUT_NODE, HOME: dir };
  await t.rejects(runCommand('ip', ['netns', 'exec', netns, 'env', '-i', `PATH=${PATH_WITHOUT_NODE}`, 'sh', '-c', 'command -v node'], { cwd: dir }), 'no node on this PATH');

  const snapshot = await runCommand('ip', ['netns', 'exec', netns, 'env', '-i', `PATH=${PATH_WITHOUT_NODE}`, binary, 'snapshot', '--json'], { cwd: dir });
  t.equal(snapshot.stderr, '', 'no warnings');
  const probes = JSON.parse(snapshot.stdout).probes;
  t.same(probes.link.links.map((l: { name: string }) => l.name).sort(), ['lo', 'va', 'vb'], 'the netlink addon works from the SEA asset');
  t.type(probes.nftables.hash, 'string');

  const child = spawn('ip', ['netns', 'exec', netns, 'env', '-i', `PATH=${env.PATH}`, binary, 'watch', '--json', '--probes', 'link', '--state-dir', dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGTERM'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  for (let i = 0; i < 100 && !out.includes('"probe":"link","status":"running"'); i += 1) await sleep(50);
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'down');
  for (let i = 0; i < 100 && !/"name":"va".*"carrier":0/.test(out.split('"name":"va"').slice(-1)[0] ?? ''); i += 1) await sleep(50);
  const vaLines = out.split('\n').filter((l) => l.includes('"name":"va"') && l.includes('"action":"new"')).map((l) => JSON.parse(l).observation);
  t.ok(vaLines.some((o) => o.link.carrier === 1), 'carrier up seen');
  t.ok(vaLines.some((o) => o.link.carrier === 0 && o.link.carrierChanges >= 2), 'and the flap down, with the counter');
});
