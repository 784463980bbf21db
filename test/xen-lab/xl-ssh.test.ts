// A Xen host reached over ssh, as a user's own is: the nested Xen lab's machine (Debian's Xen 4.17, a PV dom0, real
// xl) with an sshd in dom0, forwarded to this host's loopback; the test plays the host's administrator (its key in
// dom0's authorized_keys, a domain created from its own xl config, with the lab guest's kernel and the agent), and then
// `flinch campaign --driver xl --xl-host ssh://... --domain NAME` measures that domain: xl save/restore there and xl
// migrate to the same host (no ssh between dom0s: `xl migrate -s ''`); then `flinch rollout --driver xl` moves it the
// same way and reads its agent's verdict from a standing collector's store. Nothing mocked.
// Not part of `npm test`: `npm run test:xen` runs it (README, "Nested Xen lab").
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LabResults } from '../../harness/report/lab-results.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { buildXenLabArtifacts, DOMU_INITRD_IN_DOM0, DOMU_KERNEL_IN_DOM0 } from '../../harness/lab/xen/xen-artifacts.js';
import { NestedXen } from '../../harness/lab/xen/nested-xen.js';
import { shellQuote } from '../../system/xl.js';
import { ReportStore } from '../../harness/collector/report-store.js';
import { FLINCH, cleanEnvironment, runCli } from '../helpers/run-cli.js';
import { freePort, until } from '../helpers/collector-fixtures.js';

const DOMAIN = 'users-domu';
const AGENT_ID = 'users-xen-guest';
const DOMU_MAC = '00:16:3e:f1:1c:21';

t.test("your own Xen host over ssh: its domain saved, restored and migrated by xl there, found by its MAC, left running", async (t) => {
  const artifacts = await buildXenLabArtifacts('/var/cache/flinch', null, (line) => t.comment(line));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-xl-ssh-'));
  const sshPort = await freePort();
  const collectorPort = await freePort();

  // The user's ssh set-up: a key and a config of their own, given by --ssh-config (ssh reads the passwd entry's
  // ~/.ssh, so a test cannot lend it a home; a user with theirs in ~/.ssh gives nothing).
  const home = path.join(dir, 'home');
  mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 });
  const key = path.join(home, '.ssh', 'id_ed25519');
  t.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status, 0, 'a key of the user\'s');
  writeFileSync(path.join(home, '.ssh', 'config'), `Host 127.0.0.1\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile ${path.join(home, '.ssh', 'known_hosts')}\n  IdentityFile ${key}\n`);
  chmodSync(path.join(home, '.ssh', 'config'), 0o600);

  const logDisk = path.join(dir, 'dom0-logs.ext4');
  t.equal(spawnSync('mkfs.ext4', ['-q', '-F', logDisk, '256M']).status, 0);
  const xen = await NestedXen.boot({
    qemuBinary: 'qemu-system-x86_64', runDir: dir, artifacts, logDisk, tap: 'unused', mac: '52:54:00:f1:1c:1e', dom0Address: '10.0.2.15/24',
    memoryMiB: 3072, dom0MemoryMiB: 1024, userNetwork: { hostForwards: [`tcp:127.0.0.1:${sshPort}-:22`] },
  }, 600_000);
  t.teardown(() => xen.shutdown());

  // The administrator's part: the key in dom0, and a domain created from an xl config of their own.
  await xen.check(`mkdir -p /root/.ssh && chmod 700 /root/.ssh && printf '%s\\n' ${shellQuote(readFileSync(`${key}.pub`, 'utf8').trim())} > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys`);
  const secret = path.join(dir, 'fleet.secret');
  writeFileSync(secret, 'a-xen-users-fleet-secret-0123456789abcdef0123\n', { mode: 0o600 });
  const extra = [
    'console=hvc0', 'quiet', 'flinch.ip=10.0.2.16/24', 'flinch.gw=10.0.2.2', `flinch.collector=ws://10.0.2.2:${collectorPort}`, `flinch.id=${AGENT_ID}`,
    `flinch.token=${agentKeyFor('a-xen-users-fleet-secret-0123456789abcdef0123', AGENT_ID)}`, 'flinch.remediate=on', 'flinch.console=hvc0', 'flinch.timing-noise=500',
  ].join(' ');
  const config = [`name = "${DOMAIN}"`, 'type = "pv"', `kernel = "${DOMU_KERNEL_IN_DOM0}"`, `ramdisk = "${DOMU_INITRD_IN_DOM0}"`, `extra = "${extra}"`, 'memory = 512', 'vcpus = 1', `vif = [ 'mac=${DOMU_MAC},bridge=xenbr0' ]`];
  await xen.check(`printf '%s\\n' ${config.map(shellQuote).join(' ')} > /root/${DOMAIN}.cfg && xl create /root/${DOMAIN}.cfg`, 120_000);

  const asUser = { timeoutMs: 2_400_000 };
  const host = `ssh://root@127.0.0.1:${sshPort}`;
  const own = ['--driver', 'xl', '--xl-host', host, '--ssh-config', path.join(home, '.ssh', 'config'), '--fleet-secret', secret, '--collector-listen', `127.0.0.1:${collectorPort}`];
  const out = path.join(dir, 'campaign');
  const run = await runCli([FLINCH, 'campaign', ...own, '--domain', DOMAIN, '--agent-timeout', '900', '--faults', 'none', '--migrations', '1', '--expect', 'disrupted', '--out', out], asUser);
  t.equal(run.code, 0, run.stderr.split('\n').slice(-5).join('\n'));
  t.match(run.stderr, new RegExp(`agent ${AGENT_ID} on \\S+ connected`), 'found by the MAC xl network-list gives');
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.match(results.hypervisor.xen, /^4\.17\./, "xl info's version, read over ssh");
  t.equal(results.guest.domain, DOMAIN);
  t.same(results.migrations.map((m) => m.method), ['save-restore', 'migrate'], 'both ways, by default');
  for (const m of results.migrations) {
    t.notOk(m.error, m.error ?? `${m.method} done`);
    t.equal(m.verdictSource, 'agent', `${m.method}: judged by the agent in the domain: ${m.verdict} (${m.reasons.slice(0, 2).join('; ')})`);
    t.ok(typeof m.pauseMs === 'number' && m.pauseMs > 0 && m.pauseMs <= m.totalMs!, `${m.method}: the pause from @releaseDomain in dom0 to xl's return, ${m.pauseMs} of ${m.totalMs} ms`);
  }
  t.match(await xen.check(`xl list ${DOMAIN}`), new RegExp(`^${DOMAIN}\\s+\\d+\\s+512\\s+1\\s+-?[rb]`, 'm'), 'left running');
  t.equal((await xen.run(`ls /var/lib/xen/flinch-${DOMAIN}.save`, 10_000)).exitCode === 0, false, 'no copy of its memory left in dom0');

  // The same domain rolled out as a fleet's would be: its agent reporting to a standing collector's store, and
  // flinch rollout --driver xl reading its verdict there after xl migrate on that host.
  const storeFile = path.join(dir, 'fleet.sqlite');
  const collector = spawn(process.execPath, [FLINCH, 'collect', '--listen', `127.0.0.1:${collectorPort}`, '--store', storeFile, '--fleet-secret', secret, '--liveness-interval', '2000'], {
    env: cleanEnvironment(), stdio: ['ignore', 'ignore', 'pipe'],
  });
  let collectorLog = '';
  collector.stderr!.on('data', (d) => (collectorLog += d));
  t.teardown(() => void collector.kill('SIGKILL'));
  await until('the collector listening', () => collectorLog.includes('listening on'));
  const store = new ReportStore(storeFile);
  t.teardown(() => store.close());
  await until('the agent back, to the standing collector', () => store.agents().some((a) => a.agentId === AGENT_ID), 300_000);
  await sleep(15_000);
  const rolloutOut = path.join(dir, 'rollout');
  const rollout = await runCli([
    FLINCH, 'rollout', '--driver', 'xl', '--xl-host', host, '--xl-dest', host, '--ssh-config', path.join(home, '.ssh', 'config'), '--domain', `${DOMAIN}=${AGENT_ID}`,
    '--store', storeFile, '--halt-at', '1', '--verdict-timeout', '180', '--out', rolloutOut,
  ], asUser);
  if (rollout.code !== 0) t.comment(rollout.stderr.slice(-3000));
  t.equal(rollout.code, 0, 'a limit of 1 never halts');
  const rolled = JSON.parse(readFileSync(path.join(rolloutOut, 'rollout.json'), 'utf8')) as { migrated: Array<{ guest: string; verdict: string; evidence: string[] }> };
  t.same(rolled.migrated.map((o) => o.guest), [DOMAIN]);
  t.ok(['transparent', 'noticed', 'healed', 'disrupted'].includes(rolled.migrated[0]!.verdict), `judged by its agent: ${rolled.migrated[0]!.verdict}: ${rolled.migrated[0]!.evidence.slice(0, 4).join('; ')}`);
  t.match(await xen.check(`xl list ${DOMAIN}`), new RegExp(`^${DOMAIN}\\s+\\d+\\s+512\\s+1\\s+-?[rb]`, 'm'), 'running after the rollout');

  const unknown = await runCli([FLINCH, 'campaign', ...own, '--domain', 'nobody', '--out', path.join(dir, 'unknown')], asUser);
  t.equal(unknown.code, 2, 'an unknown domain: exit 2');
  t.match(unknown.stderr, /^flinch: Xen domain nobody on root@127\.0\.0\.1: .*\(xl list shows the domains there\)\n$/, unknown.stderr);
  const refused = await runCli([FLINCH, 'campaign', ...own.slice(0, 2), '--xl-host', 'ssh://root@127.0.0.1:1', ...own.slice(4), '--domain', DOMAIN, '--out', path.join(dir, 'refused')], asUser);
  t.equal(refused.code, 3, 'an ssh host that refuses: exit 3');
  t.match(refused.stderr, /^flinch: Xen host root@127\.0\.0\.1 does not answer: .*(refused|Connection)/, refused.stderr);
  t.equal(refused.stderr.trim().split('\n').length, 1, 'in one line');
});
