// The safety net's scenarios, for real: the agent bundle with --remediate on in a private namespace with a veth pair,
// addresses, routes, nftables and iptables (nft and legacy) rules, and the faults done with the real tools.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../agent/system/run-command.js';
import type { Report } from '../../agent/report/report-schema.js';
import { ipIn, testNetns } from '../helpers/netns.js';
import { startAgent, type AgentProcess } from '../helpers/agent-process.js';

const MAC = '02:00:00:00:00:0a';
const PEER_MAC = '02:00:00:00:00:0b';
const exec = (netns: string, command: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, command, ...args]);

async function guest(t: Test): Promise<string> {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'address', MAC, 'type', 'veth', 'peer', 'name', 'vb', 'address', PEER_MAC);
  await ipIn(netns, 'addr', 'add', '192.0.2.10/24', 'dev', 'va');
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  await ipIn(netns, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1');
  await exec(netns, 'nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input iif va tcp dport 22 accept; add rule inet user input tcp dport 23 drop');
  await exec(netns, 'iptables-nft', '-A', 'INPUT', '-p', 'tcp', '--dport', '9998', '-j', 'DROP');
  await exec(netns, 'iptables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP');
  return netns;
}

interface Agent extends AgentProcess {
  stateDir: string;
  reports(): Report[];
  nextReport(from: number, timeoutMs?: number): Promise<Report>;
}

async function agentIn(t: Test, netns: string, mode = 'on', stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-state-'))): Promise<Agent> {
  const agent = startAgent(t, [
    'watch', '--json', '--probes', 'link,addressing,nftables,iptables,clock', '--remediate', mode, '--settle', '1500',
    '--adopt-after', '2000', '--legacy-poll', '200', '--state-dir', stateDir,
  ], netns);
  for (let i = 0; i < 200 && !agent.stderr.join('').includes('ready:'); i += 1) await sleep(50);
  if (!agent.stderr.join('').includes('ready:')) throw new Error(`agent not ready: ${agent.stderr.join('')}`);
  const reports = () => agent.observations.filter((o) => 'schema' in o) as unknown as Report[];
  return {
    ...agent,
    stateDir,
    reports,
    async nextReport(from, timeoutMs = 20_000) {
      return (await agent.waitFor((o) => 'schema' in o, from, timeoutMs)) as unknown as Report;
    },
  };
}

async function flapCarrier(netns: string): Promise<void> {
  await ipIn(netns, 'link', 'set', 'vb', 'down');
  await sleep(100);
  await ipIn(netns, 'link', 'set', 'vb', 'up');
}

t.test('pause + link flap + firewall flush: disrupted, then healed, with the rules back', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const mark = agent.observations.length;
  agent.child.kill('SIGSTOP');
  await sleep(400);
  agent.child.kill('SIGCONT');
  await flapCarrier(netns);
  await exec(netns, 'nft', 'flush', 'ruleset');
  await exec(netns, 'iptables-legacy', '-F');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.equal(report.remediation.outcome, 'healed');
  t.ok(report.remediation.timeToHealMs !== null && report.remediation.timeToHealMs >= 0, `healed in ${report.remediation.timeToHealMs} ms`);
  const kinds = new Set(report.episode.triggers.map((x) => x.kind));
  t.ok(kinds.has('carrier-counter') && kinds.has('canary-lost'), [...kinds].join(','));
  t.ok(report.evidence.some((e) => e.severity === 'disrupted' && e.kind === 'firewall-flushed'));
  for (const a of report.remediation.actions.filter((x) => x.what === 'firewall-table')) {
    t.equal(a.result, 'ok', `${a.target} restored`);
    t.not(a.beforeHash, a.afterHash, 'the audit shows the hash before and after');
    t.match(a.command, /nft -f -|restore/);
  }
  t.match((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /iif "va" tcp dport 22 accept/);
  t.match((await exec(netns, 'iptables-nft-save')).stdout, /--dport 9998 -j DROP/);
  t.match((await exec(netns, 'iptables-legacy-save')).stdout, /--dport 9 -j DROP/);
  t.match((await exec(netns, 'nft', 'list', 'tables')).stdout, /flinch_canary/, 'the canary is back too');
  const stored = readFileSync(path.join(agent.stateDir, 'reports.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.equal(stored.at(-1).episode.id, report.episode.id, 'the report is in reports.jsonl');
});

t.test('an address flush inside an episode is restored, with the route that went with it', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const mark = agent.observations.length;
  await flapCarrier(netns);
  await ipIn(netns, 'addr', 'flush', 'dev', 'va');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.match((await ipIn(netns, 'addr', 'show', 'dev', 'va')), /inet 192\.0\.2\.10\/24/);
  t.match((await ipIn(netns, 'route', 'show')), /198\.51\.100\.0\/24 via 192\.0\.2\.1 dev va/);
  t.ok(report.remediation.actions.some((a) => a.what === 'address' && a.result === 'ok'));
  t.ok(report.remediation.actions.some((a) => a.what === 'announce'), 'a gratuitous ARP was attempted for the restored address');
});

t.test('an interface re-created under a new ifindex gets its addresses, routes and iif rules back', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const before = Number((await ipIn(netns, '-j', 'link', 'show', 'va')).match(/"ifindex":(\d+)/)![1]);
  const mark = agent.observations.length;
  await ipIn(netns, 'link', 'del', 'va');
  await ipIn(netns, 'link', 'add', 'va', 'address', MAC, 'type', 'veth', 'peer', 'name', 'vb', 'address', PEER_MAC);
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  const report = await agent.nextReport(mark);
  t.ok(report.episode.triggers.some((x) => x.kind === 'interface-recreated'), 'the re-creation opened the episode');
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  const after = Number((await ipIn(netns, '-j', 'link', 'show', 'va')).match(/"ifindex":(\d+)/)![1]);
  t.not(after, before, 'a new ifindex');
  t.match(await ipIn(netns, 'addr', 'show', 'dev', 'va'), /state UP|UP/);
  t.match(await ipIn(netns, 'addr', 'show', 'dev', 'va'), /inet 192\.0\.2\.10\/24/);
  t.match(await ipIn(netns, 'route', 'show'), /198\.51\.100\.0\/24 via 192\.0\.2\.1 dev va/);
  t.match((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /iif "va" tcp dport 22 accept/, 'the iif rule names va again, at its new index');
});

t.test("an administrator's deliberate rule deletion outside an episode is not reverted, and becomes the baseline", async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const handle = /tcp dport 23 drop # handle (\d+)/.exec((await exec(netns, 'nft', '-a', 'list', 'table', 'inet', 'user')).stdout)![1]!;
  await exec(netns, 'nft', 'delete', 'rule', 'inet', 'user', 'input', 'handle', handle);
  await sleep(3500);
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport 23/, 'still deleted');
  t.match(agent.stderr.join(''), /adopted the administrator's change as the new baseline/);
  t.same(agent.reports(), [], 'no episode, no report');
  const mark = agent.observations.length;
  await flapCarrier(netns);
  const report = await agent.nextReport(mark);
  t.notOk(report.remediation.actions.some((a) => a.what === 'firewall-table'), 'a later episode does not bring the rule back');
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport 23/);
});

t.test('a flush loop ends in conflict', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const mark = agent.observations.length;
  await flapCarrier(netns);
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
    await sleep(150);
  }
  const report = await agent.nextReport(mark, 30_000);
  t.equal(report.remediation.outcome, 'conflict');
  t.equal(report.verdict, 'disrupted');
  const conflicts = report.remediation.actions.filter((a) => a.result === 'conflict');
  t.equal(conflicts.length, 1, 'reported once');
  t.match(conflicts[0]!.target, /inet user/);
  const restores = report.remediation.actions.filter((a) => a.target === conflicts[0]!.target && a.result === 'ok');
  t.ok(restores.length <= 3, `bounded: ${restores.length} restores before giving up`);
});

t.test('dry-run changes nothing and says exactly what it would do', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns, 'dry-run');
  const mark = agent.observations.length;
  await flapCarrier(netns);
  await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
  const report = await agent.nextReport(mark);
  t.equal(report.remediation.mode, 'dry-run');
  t.equal(report.remediation.outcome, 'dry-run');
  t.equal(report.verdict, 'disrupted');
  const action = report.remediation.actions.find((a) => a.what === 'firewall-table')!;
  t.equal(action.result, 'dry-run');
  t.match(action.command, /^nft -f - <<'EOF'\ntable inet user\ndelete table inet user\ntable inet user \{/);
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport/, 'the flushed table stays flushed');
});

t.test('a corrupt state directory is moved aside and the baseline rebuilt from live state', async (t) => {
  const netns = await guest(t);
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-state-'));
  writeFileSync(path.join(stateDir, 'baseline.json'), '{"version": 1, "data": {"interfaces": ');
  writeFileSync(path.join(stateDir, 'reports.jsonl'), '{"torn line\n');
  const agent = await agentIn(t, netns, 'on', stateDir);
  t.match(agent.stderr.join(''), /state file .*baseline\.json is unusable \(.*\); moved to .*baseline\.json\.corrupt-\d+, rebuilding from live state/);
  t.ok(readdirSync(stateDir).some((f) => f.startsWith('baseline.json.corrupt-')));
  const rebuilt = JSON.parse(readFileSync(path.join(stateDir, 'baseline.json'), 'utf8'));
  t.equal(rebuilt.version, 1);
  t.ok(rebuilt.data.interfaces[MAC], 'the rebuilt baseline knows va by its MAC');
  const mark = agent.observations.length;
  await flapCarrier(netns);
  await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
  t.equal((await agent.nextReport(mark)).verdict, 'healed', 'and it heals from the rebuilt baseline');
  t.ok(existsSync(path.join(stateDir, 'reports.jsonl')));
});
