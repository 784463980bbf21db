// The safety net's scenarios, for real: the agent bundle (`run --remediate on`) in a private namespace with a veth
// pair, addresses, routes, nftables and iptables (nft and legacy) rules, and the faults done with the real tools. A
// namespace cannot raise NOTIFY_PEERS (this kernel has no bonding or dummy driver), so the migration signal is a signed
// harness announcement from a real collector in the same namespace; the QEMU lab's faults are the real proof.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ipIn } from '../helpers/netns.js';
import { startAgent } from '../helpers/agent-process.js';
import { agentIn, etcOverlay, exec, flapCarrier, guest, MAC, nftObjects, PEER_MAC } from '../helpers/safety-net-guest.js';

t.test('pause + link flap + firewall flush: disrupted, then healed, with the rules back', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const mark = agent.mark();
  agent.migrate();
  agent.child.kill('SIGSTOP');
  await sleep(400);
  agent.child.kill('SIGCONT');
  await flapCarrier(netns);
  await exec(netns, 'nft', 'flush', 'ruleset');
  await exec(netns, 'iptables-legacy', '-F');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.equal(report.remediation.outcome, 'healed');
  // From the first disruption the report shows to the last repair that worked: the report's own stamps, not a bound.
  const firstLoss = report.evidence.find((e) => e.severity === 'disrupted')!;
  const lastFix = report.remediation.actions.filter((a) => a.result === 'ok').at(-1)!;
  const healSpan = Math.round((lastFix.at.monotonicMs - firstLoss.at.monotonicMs) * 100) / 100;
  t.ok(healSpan > 0, `the repair came after the loss (${healSpan} ms)`);
  t.equal(report.remediation.timeToHealMs, healSpan, `healed in ${report.remediation.timeToHealMs} ms`);
  const kinds = new Set(report.episode.triggers.map((x) => x.kind));
  t.ok(kinds.has('harness-announce') && kinds.has('carrier-counter') && kinds.has('canary-lost'), [...kinds].join(','));
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
  const mark = agent.mark();
  agent.migrate();
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
  const mark = agent.mark();
  agent.migrate();
  await ipIn(netns, 'link', 'del', 'va');
  await ipIn(netns, 'link', 'add', 'va', 'address', MAC, 'type', 'veth', 'peer', 'name', 'vb', 'address', PEER_MAC);
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  const report = await agent.nextReport(mark);
  t.ok(report.episode.triggers.some((x) => x.kind === 'interface-recreated'), 'the re-creation is in the episode');
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
  t.match(agent.stderr.join(''), /adopted the change\(s\) as the new baseline/);
  t.same(agent.reports(), [], 'no episode, no report');
  t.match(agent.collector.safetyNet, [{ kind: 'safety-net', what: 'firewall-table', target: 'firewall nftables inet user', result: 'left-alone', why: /changed-outside-migration/ }],
    'yet the collector was told, as it happened, that a change was left alone');
  const mark = agent.mark();
  agent.migrate();
  const report = await agent.nextReport(mark);
  t.notOk(report.remediation.actions.some((a) => a.what === 'firewall-table'), 'a later episode does not bring the rule back');
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport 23/);
});

t.test('a flush loop ends in conflict', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  const mark = agent.mark();
  agent.migrate();
  // Something keeps flushing the table (a loop of another manager's) until the agent stops trying: on a loaded
  // machine each repair takes longer, so the loop runs until the agent says conflict, not for a fixed time.
  const until = Date.now() + 30_000;
  while (Date.now() < until && !/safety net: conflict:/.test(agent.stderr.join(''))) {
    await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
    await sleep(150);
  }
  const report = await agent.nextReport(mark, 30_000);
  t.equal(report.remediation.outcome, 'conflict', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
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
  const mark = agent.mark();
  agent.migrate();
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

t.test('the baseline is taken afresh from live state at every start; a stale or corrupt one is never used', async (t) => {
  const netns = await guest(t);
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-state-'));
  writeFileSync(path.join(stateDir, 'baseline.json'), '{"version": 1, "data": {"interfaces": ');
  writeFileSync(path.join(stateDir, 'reports.jsonl'), '{"torn line\n');
  const agent = await agentIn(t, netns, 'on', stateDir);
  const rebuilt = JSON.parse(readFileSync(path.join(stateDir, 'baseline.json'), 'utf8'));
  t.equal(rebuilt.version, 2);
  t.ok(rebuilt.data.interfaces[MAC], 'the baseline knows va by its MAC');
  t.notOk(readdirSync(stateDir).some((f) => f.startsWith('baseline.json.corrupt-')), 'nothing to move aside: it was not read');
  const mark = agent.mark();
  agent.migrate();
  await flapCarrier(netns);
  await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
  t.equal((await agent.nextReport(mark)).verdict, 'healed', 'and it heals from the rebuilt baseline');
  t.ok(existsSync(path.join(stateDir, 'reports.jsonl')));
});

/** The nftables service's own reload command, read from Debian's unit (nothing of ours). */
function nftablesServiceReload(): string[] {
  const unit = readFileSync('/lib/systemd/system/nftables.service', 'utf8');
  const line = /^ExecReload=(.+)$/m.exec(unit)![1]!.trim();
  return line.split(/\s+/);
}

/** A Debian-style /etc/nftables.conf that tightens the guest's firewall: policy drop, port 2222 opened, 23 closed. */
const TIGHTENED_CONF = `#!/usr/sbin/nft -f
flush ruleset

table inet user {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    tcp dport 2222 accept
  }
}
`;

t.test("`systemctl reload nftables` (flush ruleset + a tightened config) is kept, not reverted", async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  writeFileSync(path.join(etcOverlay(t, netns), 'nftables.conf'), TIGHTENED_CONF);
  const [command, ...args] = nftablesServiceReload();
  await exec(netns, command!, ...args);
  const expected = (await exec(netns, 'nft', '-j', 'list', 'table', 'inet', 'user')).stdout;
  await sleep(3500); // past --adopt-after
  const after = (await exec(netns, 'nft', '-j', 'list', 'table', 'inet', 'user')).stdout;
  t.same(nftObjects(after), nftObjects(expected), 'the tightened table, object by object, is what the administrator loaded');
  t.match(after, /"policy": "drop"|"policy":"drop"/);
  t.same(agent.reports(), [], 'no migration, no episode');
  t.match(agent.stderr.join(''), /left-alone: firewall-table firewall nftables inet user/);
  t.match(agent.stderr.join(''), /adopted the change\(s\) as the new baseline/);
  const mark = agent.mark();
  agent.migrate();
  const report = await agent.nextReport(mark);
  t.notOk(report.remediation.actions.some((a) => a.what === 'firewall-table' && a.result === 'ok'), 'a later migration does not bring the old ruleset back');
  t.same(nftObjects((await exec(netns, 'nft', '-j', 'list', 'table', 'inet', 'user')).stdout), nftObjects(expected));
});

t.test('netfilter-persistent-style reload (iptables-restore without --noflush) is kept, and a migration-time flush is still healed', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  // Like any real rules.v4 with a drop policy, it accepts loopback (where this test's collector listens).
  await exec(netns, 'sh', '-c', "printf '*filter\\n:INPUT DROP [0:0]\\n:FORWARD DROP [0:0]\\n:OUTPUT ACCEPT [0:0]\\n-A INPUT -i lo -j ACCEPT\\n-A INPUT -p tcp --dport 2222 -j ACCEPT\\nCOMMIT\\n' | iptables-nft-restore");
  await sleep(3500);
  const saved = (await exec(netns, 'iptables-nft-save')).stdout;
  t.match(saved, /:INPUT DROP/, 'the new policy stays');
  t.match(saved, /--dport 2222 -j ACCEPT/);
  t.notMatch(saved, /--dport 9998/, 'the rule the admin dropped stays dropped');
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'iptables-nft', '-F', 'INPUT');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  const healed = (await exec(netns, 'iptables-nft-save')).stdout;
  t.match(healed, /--dport 2222 -j ACCEPT/, 'healed to the adopted ruleset');
  t.match(healed, /:INPUT DROP/);
  t.match(report.remediation.actions.find((a) => a.what === 'firewall-table' && a.result === 'ok')!.command ?? '', /--noflush/, 'per chain, with --noflush');
});

t.test('a fail2ban-style ban added after the baseline survives an episode; a migration-time flush of the table restores it without stale bans', async (t) => {
  const netns = await guest(t);
  await exec(netns, 'nft', 'add table inet f2b-table; add set inet f2b-table addr-set-sshd { type ipv4_addr; flags timeout; }; add chain inet f2b-table f2b-chain { type filter hook input priority -1; }; add rule inet f2b-table f2b-chain ip saddr @addr-set-sshd drop');
  await exec(netns, 'nft', 'add element inet f2b-table addr-set-sshd { 203.0.113.1 timeout 10m }');
  const agent = await agentIn(t, netns);
  await exec(netns, 'nft', 'add element inet f2b-table addr-set-sshd { 203.0.113.7 timeout 10m }');
  await exec(netns, 'nft', 'delete element inet f2b-table addr-set-sshd { 203.0.113.1 }');
  const mark = agent.mark();
  agent.migrate();
  await ipIn(netns, 'addr', 'flush', 'dev', 'va');
  const report = await agent.nextReport(mark);
  t.notOk(report.remediation.actions.some((a) => a.target.includes('f2b-table')), 'the ban table was not touched: a ban is state, not loss');
  const set = (await exec(netns, 'nft', 'list', 'set', 'inet', 'f2b-table', 'addr-set-sshd')).stdout;
  t.match(set, /203\.0\.113\.7/, 'the new ban survived');
  t.notMatch(set, /203\.0\.113\.1\b/, 'the lifted ban did not come back');
  const mark2 = agent.mark();
  agent.migrate();
  await exec(netns, 'nft', 'delete', 'table', 'inet', 'f2b-table');
  const second = await agent.nextReport(mark2);
  t.ok(second.remediation.actions.some((a) => a.target.includes('f2b-table') && a.result === 'ok'), 'a table a migration took comes back');
  const restored = (await exec(netns, 'nft', 'list', 'table', 'inet', 'f2b-table')).stdout;
  t.match(restored, /ip saddr @addr-set-sshd drop/);
  t.notMatch(restored, /203\.0\.113\./, 'without the baseline\'s stale elements');

  // Partly emptied (its chain flushed, its set still there): the chain's rule comes back and the bans it holds now stay,
  // with the time they had left, while the one lifted since the baseline stays lifted.
  await exec(netns, 'nft', 'add element inet f2b-table addr-set-sshd { 203.0.113.9 timeout 10m expires 7m }');
  const mark3 = agent.mark();
  agent.migrate();
  await exec(netns, 'nft', 'flush', 'chain', 'inet', 'f2b-table', 'f2b-chain');
  const third = await agent.nextReport(mark3);
  t.ok(third.remediation.actions.some((a) => a.target.includes('f2b-table') && a.result === 'ok'), `a flushed chain is put back (${third.remediation.actions.map((a) => `${a.target} ${a.result}`).join('; ')})`);
  const after = (await exec(netns, 'nft', 'list', 'table', 'inet', 'f2b-table')).stdout;
  t.match(after, /ip saddr @addr-set-sshd drop/);
  const ban = /203\.0\.113\.9 timeout 10m expires (\d+)m/.exec(after);
  t.ok(ban && Number(ban[1]) >= 6 && Number(ban[1]) <= 7, `the ban held at the flush is there, with its remaining lifetime (${ban?.[0]})`);
});

t.test('a native nft `table ip filter` is nft\'s: no canary injected into it, and a flush gives back its own chains', async (t) => {
  const netns = await guest(t);
  await exec(netns, 'nft', 'add table ip filter; add chain ip filter input { type filter hook input priority 0; policy accept; }; add rule ip filter input tcp dport 8080 drop; add chain ip filter output { type filter hook output priority 0; }');
  const before = (await exec(netns, 'nft', '-j', 'list', 'table', 'ip', 'filter')).stdout;
  const agent = await agentIn(t, netns);
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'ip', 'filter')).stdout, /FLINCH-CANARY/, 'no canary chain in the admin\'s table');
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'nft', 'flush', 'ruleset');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.same(nftObjects((await exec(netns, 'nft', '-j', 'list', 'table', 'ip', 'filter')).stdout), nftObjects(before), 'the same table, object by object: input/output, not INPUT/FORWARD/OUTPUT');
});

t.test('a flush with no migration evidence (the canary table survives, nothing announced) is left alone', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  // Forged announcements (unsigned, wrong key, reflected) are refused by the agent's client: see
  // test/harness/collector/trust-regressions.test.ts, which drives the real CollectorClient from a spoofing server.
  await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
  await sleep(2500);
  t.same(agent.reports(), [], 'the flush alone opened no episode that repairs');
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport/, 'and nothing was restored');
});

t.test('the agent removes its canaries when it stops; watch refuses --remediate on', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns);
  t.match((await exec(netns, 'nft', 'list', 'tables')).stdout, /flinch_canary/);
  t.match((await exec(netns, 'iptables-nft-save')).stdout, /FLINCH-CANARY/);
  const exited = new Promise((resolve) => agent.child.once('exit', resolve));
  agent.child.kill('SIGTERM');
  await exited;
  t.notMatch((await exec(netns, 'nft', 'list', 'tables')).stdout, /flinch_canary/);
  t.notMatch((await exec(netns, 'iptables-nft-save')).stdout, /FLINCH-CANARY/);
  t.notMatch((await exec(netns, 'iptables-legacy-save')).stdout, /FLINCH-CANARY/);
  const watch = startAgent(t, ['watch', '--remediate', 'on'], netns);
  const code = await new Promise((resolve) => watch.child.once('exit', resolve));
  t.equal(code, 2);
  t.match(watch.stderr.join(''), /watch changes nothing in the guest/);
});

t.test('a table nft -c refuses (its interface is gone) fails alone; the others come back in one transaction', async (t) => {
  const netns = await guest(t);
  await ipIn(netns, 'link', 'add', 'vx', 'type', 'veth', 'peer', 'name', 'vy');
  await exec(netns, 'nft', 'add table inet pinned; add chain inet pinned input { type filter hook input priority 0; }; add rule inet pinned input iifname "lo" accept; add rule inet pinned input iif "vx" accept');
  const agent = await agentIn(t, netns);
  const mark = agent.mark();
  agent.migrate();
  // The migration takes an interface and the whole ruleset: the table that names the interface cannot come back.
  await ipIn(netns, 'link', 'del', 'vx');
  await exec(netns, 'nft', 'flush', 'ruleset');
  const report = await agent.nextReport(mark);
  const pinned = report.remediation.actions.find((a) => a.target === 'firewall nftables inet pinned');
  t.match(pinned, { result: 'failed', error: /nft -c refused it: .*vx|Interface does not exist/ }, JSON.stringify(pinned));
  t.ok(report.remediation.actions.some((a) => a.target === 'firewall nftables inet user' && a.result === 'ok'), 'the user table came back');
  t.match((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /iif "va" tcp dport 22 accept/);
  t.equal(report.remediation.outcome, 'partial');
});

t.test('an address with a lease (finite lifetime) is its daemon\'s: a migration-time flush puts back only the permanent one', async (t) => {
  const netns = await guest(t);
  await ipIn(netns, 'addr', 'add', '192.0.2.77/24', 'dev', 'va', 'valid_lft', '600', 'preferred_lft', '600');
  const agent = await agentIn(t, netns);
  const mark = agent.mark();
  agent.migrate();
  await ipIn(netns, 'addr', 'flush', 'dev', 'va');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result])));
  const addresses = await ipIn(netns, 'addr', 'show', 'dev', 'va');
  t.match(addresses, /inet 192\.0\.2\.10\/24/, 'the permanent address is back');
  t.notMatch(addresses, /192\.0\.2\.77/, 'the leased one is left to its DHCP client: never made permanent by flinch');
  t.notOk(report.remediation.actions.some((a) => a.target.includes('192.0.2.77')));
});

t.test('without --accept-announce, what the collector says licenses nothing: an announced migration\'s flush is left alone', async (t) => {
  const netns = await guest(t);
  const agent = await agentIn(t, netns, 'on', undefined, [], false);
  agent.migrate();
  await exec(netns, 'nft', 'flush', 'table', 'inet', 'user');
  await sleep(3000);
  t.notMatch((await exec(netns, 'nft', 'list', 'table', 'inet', 'user')).stdout, /dport/, 'not restored');
  t.match(agent.stderr.join(''), /left-alone: firewall-table firewall nftables inet user/);
  t.same(agent.reports(), [], 'and the announcement opened no episode either');
});
