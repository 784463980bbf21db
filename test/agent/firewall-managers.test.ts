// The safety net beside real firewall managers from Debian, each run inside the test's own namespace with its
// configuration overlaid there (/etc/netns): ufw, firewalld (with a D-Bus daemon of its own), fail2ban with its
// nftables action, netfilter-persistent's own script (unpacked by packaging/host-setup.sh, since it conflicts with
// ufw), and a kube-proxy-style loop re-applying its chains with `iptables-restore --noflush`. None of them is ever
// fought (the agent repairs nothing they do), and a migration-time flush under each is still healed.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ipIn } from '../helpers/netns.js';
import { until } from '../helpers/collector-fixtures.js';
import { agentIn, etcOverlay, exec, guest, nftObjects, type Agent } from '../helpers/safety-net-guest.js';

/** What the safety net did that changed something: anything but leaving alone, announcing and dry runs. */
function repairsIn(agent: Agent): string[] {
  return agent.stderr.join('').split('\n').filter((l) => /safety net: (ok|failed|conflict):/.test(l));
}

/** On failure, the agent's own account (which evidence licensed the repair) beside the diff. */
const agentLog = (agent: Agent) => ({ agentLog: agent.stderr.join('').split('\n').slice(-40).join('\n') });

/** A daemon started in the namespace (ip netns exec execs it: the PID is the daemon's), stopped in teardown. */
function daemon(t: Test, netns: string, argv: string[], env: NodeJS.ProcessEnv = {}): { output: () => string } {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  return { output: () => output };
}

async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(200);
  }
}

const chainRules = async (netns: string, table: string, chain: string) =>
  (await exec(netns, 'iptables-nft-save', '-t', table)).stdout.split('\n').filter((l) => l.startsWith(`-A ${chain} `));

t.test('ufw: enable, allow, deny and reload are never reverted; a migration flushing ufw-user-input is healed', async (t) => {
  const netns = await guest(t, false);
  etcOverlay(t, netns, 'ufw', 'default');
  await exec(netns, 'ufw', '--force', 'enable');
  const agent = await agentIn(t, netns);
  await exec(netns, 'ufw', 'allow', '2222/tcp');
  await exec(netns, 'ufw', 'deny', '23/tcp');
  await exec(netns, 'ufw', 'reload');
  await sleep(3500);
  const rules = await chainRules(netns, 'filter', 'ufw-user-input');
  t.ok(rules.some((r) => r.includes('--dport 2222') && r.includes('ACCEPT')) && rules.some((r) => r.includes('--dport 23') && r.includes('DROP')), rules.join('\n'));
  t.same(repairsIn(agent), [], 'ufw was never fought', agentLog(agent));
  t.match((await exec(netns, 'ufw', 'status')).stdout, /2222\/tcp\s+ALLOW/);
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'iptables-nft', '-F', 'ufw-user-input');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.same(await chainRules(netns, 'filter', 'ufw-user-input'), rules, "ufw's own rules are back, as ufw wrote them");
  await exec(netns, 'ufw', 'allow', '8080/tcp');
  await sleep(2500);
  t.ok((await chainRules(netns, 'filter', 'ufw-user-input')).some((r) => r.includes('--dport 8080')), 'and ufw keeps working on them');
});

t.test('firewalld (its own D-Bus): permanent rules and reloads kept; the committing process named; a migration-time table loss healed', async (t) => {
  const netns = await guest(t, false);
  etcOverlay(t, netns, 'firewalld');
  const run = mkdtempSync(path.join(os.tmpdir(), 'flinch-firewalld-'));
  const bus = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${run}/bus` };
  daemon(t, netns, ['dbus-daemon', '--config-file=/usr/share/dbus-1/system.conf', `--address=unix:path=${run}/bus`, '--nofork', '--nopidfile']);
  await eventually('the bus', async () => readdirSync(run).includes('bus'));
  const firewalld = daemon(t, netns, ['firewalld', '--nofork', '--nopid'], bus);
  const cmd = (...args: string[]) => exec(netns, 'env', `DBUS_SYSTEM_BUS_ADDRESS=${bus.DBUS_SYSTEM_BUS_ADDRESS}`, 'firewall-cmd', ...args);
  await eventually(`firewalld running (${firewalld.output().slice(0, 200)})`, async () => (await cmd('--state')).stdout.trim() === 'running', 60_000);
  const agent = await agentIn(t, netns);
  await cmd('--permanent', '--add-port=2222/tcp');
  // firewall-cmd gives up on its D-Bus reply after 25 s, and a reload (Python, the whole ruleset rebuilt) has taken
  // longer than that beside a TCG guest on this 2-core machine: the reload itself goes on. Then the test waits for
  // firewalld to have finished it, rather than failing on the client's impatience.
  await cmd('--reload').catch(async (error: Error) => {
    if (!/Did not receive a reply/.test(error.message)) throw error;
    t.comment(`firewall-cmd --reload: no reply within D-Bus's 25 s; waiting for firewalld to finish it`);
    await eventually('the reload done', async () => (await cmd('--state')).stdout.trim() === 'running' && /2222\/tcp/.test((await cmd('--list-ports')).stdout), 120_000);
  });
  await cmd('--add-port=2223/tcp');
  await sleep(3500);
  const table = (await exec(netns, 'nft', '-j', 'list', 'table', 'inet', 'firewalld')).stdout;
  t.match(table, /2222/, 'the permanent port after the reload');
  t.match(table, /2223/, 'the runtime port');
  t.same(repairsIn(agent), [], 'firewalld was never fought', agentLog(agent));
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'nft', 'delete', 'table', 'inet', 'firewalld');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.same(nftObjects((await exec(netns, 'nft', '-j', 'list', 'table', 'inet', 'firewalld')).stdout), nftObjects(table), "firewalld's table is back, object by object");
  t.ok(report.evidence.some((e) => /by process \d+ \(nft\)/.test(e.detail)), `the deletion is attributed to its process: ${report.evidence.map((e) => e.detail).join(' | ')}`);
  t.equal((await cmd('--state')).stdout.trim(), 'running');
  t.match((await cmd('--list-ports')).stdout, /2222\/tcp/);
});

t.test('fail2ban (nftables action): bans and unbans after the baseline survive a migration episode; fail2ban keeps banning', async (t) => {
  const netns = await guest(t, false);
  const etc = etcOverlay(t, netns, 'fail2ban');
  const run = mkdtempSync(path.join(os.tmpdir(), 'flinch-fail2ban-'));
  rmSync(path.join(etc, 'fail2ban', 'jail.d', 'defaults-debian.conf'), { force: true });
  writeFileSync(path.join(run, 'auth.log'), '');
  writeFileSync(path.join(etc, 'fail2ban', 'fail2ban.local'), `[Definition]\nlogtarget = STDERR\nsocket = ${run}/f2b.sock\npidfile = ${run}/f2b.pid\ndbfile = :memory:\n`);
  writeFileSync(path.join(etc, 'fail2ban', 'jail.local'), `[DEFAULT]\nbanaction = nftables-multiport\nbackend = polling\n[flinch-test]\nenabled = true\nfilter = sshd\nport = 22\nlogpath = ${run}/auth.log\nmaxretry = 100\n`);
  const server = daemon(t, netns, ['fail2ban-server', '-f', '-x']);
  const client = (...args: string[]) => exec(netns, 'fail2ban-client', ...args);
  await eventually(`fail2ban up (${server.output().slice(-300)})`, async () => /pong/.test((await client('ping')).stdout));
  await client('set', 'flinch-test', 'banip', '203.0.113.1');
  await eventually('the first ban', async () => /203\.0\.113\.1/.test((await exec(netns, 'nft', 'list', 'ruleset')).stdout));
  const agent = await agentIn(t, netns);
  await client('set', 'flinch-test', 'banip', '203.0.113.7');
  await client('set', 'flinch-test', 'unbanip', '203.0.113.1');
  const set = () => exec(netns, 'nft', 'list', 'set', 'inet', 'f2b-table', 'addr-set-flinch-test').then((r) => r.stdout);
  await eventually('the ban and the unban applied', async () => /203\.0\.113\.7/.test(await set()) && !/203\.0\.113\.1\b/.test(await set()));
  const mark = agent.mark();
  agent.migrate();
  await ipIn(netns, 'addr', 'flush', 'dev', 'va');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', 'the address the migration took is back');
  t.notOk(report.remediation.actions.some((a) => a.target.includes('f2b-table') && a.result !== 'left-alone'), "fail2ban's table was not touched");
  t.match(await set(), /203\.0\.113\.7/, 'the new ban survived');
  t.notMatch(await set(), /203\.0\.113\.1\b/, 'the lifted ban did not come back');
  await client('set', 'flinch-test', 'banip', '203.0.113.8');
  await eventually('fail2ban still bans', async () => /203\.0\.113\.8/.test(await set()));
  t.same(repairsIn(agent).filter((l) => l.includes('f2b')), [], 'fail2ban was never fought', agentLog(agent));
  await sleep(3000); // its bans adopted, as any lasting change
  const mark2 = agent.mark();
  agent.migrate();
  await exec(netns, 'nft', 'flush', 'ruleset');
  const flushed = await agent.nextReport(mark2);
  t.equal(flushed.verdict, 'healed', JSON.stringify(flushed.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.match(await set(), /203\.0\.113\.7.*203\.0\.113\.8|203\.0\.113\.8.*203\.0\.113\.7/s, "a migration-time flush: fail2ban's table back with the bans it had");
  await client('set', 'flinch-test', 'banip', '203.0.113.9');
  await eventually('and fail2ban bans into it again', async () => /203\.0\.113\.9/.test(await set()));
});

const NFP_DIR = readdirSync('/var/cache/flinch').filter((d) => d.startsWith('netfilter-persistent-')).map((d) => path.join('/var/cache/flinch', d))[0];

t.test("netfilter-persistent's own reload is kept and adopted; a migration-time flush heals to the reloaded rules", { skip: NFP_DIR ? false : 'netfilter-persistent is not unpacked (packaging/host-setup.sh does it)' }, async (t) => {
  const netns = await guest(t, false);
  const etc = etcOverlay(t, netns, 'default');
  // ip netns exec binds /etc/netns/NETNS/iptables only onto an existing /etc/iptables: an empty mount point, made here
  // if this host has none (netfilter-persistent is not installed) and removed afterwards.
  if (!existsSync('/etc/iptables')) {
    mkdirSync('/etc/iptables');
    t.teardown(() => rmdirSync('/etc/iptables'));
  }
  // Its own defaults file may move PLUGINS; that is how the unpacked copy's iptables plugins are found.
  writeFileSync(path.join(etc, 'default', 'netfilter-persistent'), `PLUGINS=${NFP_DIR}/usr/share/netfilter-persistent/plugins.d\n`);
  mkdirSync(path.join(etc, 'iptables'));
  const rules = (ports: number[]) => `*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n${ports.map((p) => `-A INPUT -p tcp -m tcp --dport ${p} -j ACCEPT\n`).join('')}COMMIT\n`;
  writeFileSync(path.join(etc, 'iptables', 'rules.v4'), rules([22]));
  // Both files, as the package's own save leaves them (its ip6tables plugin fails without rules.v6).
  writeFileSync(path.join(etc, 'iptables', 'rules.v6'), '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n');
  const nfp = (action: string) => exec(netns, 'sh', `${NFP_DIR}/usr/sbin/netfilter-persistent`, action);
  await nfp('start');
  const agent = await agentIn(t, netns);
  writeFileSync(path.join(etc, 'iptables', 'rules.v4'), rules([2222, 2223]));
  await nfp('reload');
  // Adopted after --adopt-after (2 s) of lasting; a loaded machine takes longer to look again.
  await until('the reload adopted', () => /adopted the change\(s\) as the new baseline/.test(agent.stderr.join('')), 30_000);
  const reloaded = await chainRules(netns, 'filter', 'INPUT');
  t.ok(reloaded.some((r) => r.includes('--dport 2223')) && !reloaded.some((r) => r.includes('--dport 22 ')), reloaded.join('\n'));
  t.same(repairsIn(agent), [], 'the reload was never reverted', agentLog(agent));
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'iptables-nft', '-F', 'INPUT');
  const report = await agent.nextReport(mark);
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.same(await chainRules(netns, 'filter', 'INPUT'), reloaded, 'healed to what netfilter-persistent loaded, not to the first baseline');

  // A reload, and a migration-time flush before the reload had lasted --adopt-after: healed to the reload all the same.
  writeFileSync(path.join(etc, 'iptables', 'rules.v4'), rules([2224]));
  await nfp('reload');
  await until('the reload seen, waiting to be adopted', () => /change\(s\) with no migration to explain them: left alone; adopting/.test(agent.stderr.join('').split('the new baseline').at(-1)!), 30_000);
  const reloadedAgain = await chainRules(netns, 'filter', 'INPUT');
  t.ok(reloadedAgain.some((r) => r.includes('--dport 2224')), reloadedAgain.join('\n'));
  const secondMark = agent.mark();
  agent.migrate();
  await exec(netns, 'iptables-nft', '-F', 'INPUT');
  const second = await agent.nextReport(secondMark);
  t.equal(second.verdict, 'healed');
  t.same(await chainRules(netns, 'filter', 'INPUT'), reloadedAgain, 'healed to the reload the migration came right after');
});

t.test('a kube-proxy-style loop re-applying its chains with iptables-restore --noflush is never fought, and a migration-time nat flush ends with no duplicate rules', async (t) => {
  const netns = await guest(t, false);
  const script = `*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-DNS - [0:0]\n-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-DNS\n-A KUBE-SVC-DNS -p udp -j DNAT --to-destination 10.0.0.5:53\nCOMMIT\n*filter\n:KUBE-FIREWALL - [0:0]\n-A KUBE-FIREWALL -m mark --mark 0x8000/0x8000 -j DROP\nCOMMIT\n`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-kube-'));
  writeFileSync(path.join(dir, 'rules'), script);
  // kube-proxy's way: its own chains re-declared and refilled wholesale, jumps into them checked and added once
  // (EnsureRule: -C, then -A). The loop says when it checked and when it added, in ms since the epoch.
  const loop = `while :; do iptables-nft-restore --noflush < ${dir}/rules || echo FAILED; echo "check $(date +%s%3N)"; iptables-nft -t nat -C PREROUTING -j KUBE-SERVICES 2>/dev/null || { iptables-nft -t nat -A PREROUTING -j KUBE-SERVICES; echo "added $(date +%s%3N)"; }; sleep 1; done`;
  const kube = daemon(t, netns, ['sh', '-c', loop]);
  await eventually('the loop\'s chains', async () => (await chainRules(netns, 'nat', 'KUBE-SERVICES')).length === 1);
  const agent = await agentIn(t, netns);
  for (let i = 0; i < 2; i += 1) {
    const mark = agent.mark();
    agent.migrate();
    await ipIn(netns, 'addr', 'flush', 'dev', 'va');
    t.equal((await agent.nextReport(mark)).verdict, 'healed', `migration ${i + 1}: healed`);
  }
  const mark = agent.mark();
  agent.migrate();
  await exec(netns, 'iptables-nft', '-t', 'nat', '-F');
  const report = await agent.nextReport(mark);
  t.notOk(report.remediation.actions.some((a) => a.result === 'conflict'), 'no fight');
  await sleep(2500); // a loop iteration after the agent's repair
  t.same(await chainRules(netns, 'nat', 'KUBE-SERVICES'), ['-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-DNS'], 'one copy of each rule');
  // A check-then-add is racy against any other writer: if flinch's repair lands between the loop's -C and its -A, the
  // loop adds a second jump itself. flinch put back one; a second is the loop's own, and only then allowed.
  const jumps = await chainRules(netns, 'nat', 'PREROUTING');
  const natRepair = report.remediation.actions.find((a) => a.result === 'ok' && /nat/.test(a.target));
  const repairDone = natRepair?.at.realtimeMs ?? 0;
  const repairStart = repairDone - (natRepair?.durationMs ?? 0);
  const events = [...kube.output().matchAll(/^(check|added) (\d+)$/gm)].map((m) => ({ what: m[1]!, atMs: Number(m[2]) }));
  const loopRaced = events.some((e, i) => e.what === 'added' && e.atMs >= repairStart && events[i - 1]?.what === 'check' && events[i - 1]!.atMs <= repairDone);
  if (loopRaced) t.comment(`the loop checked before flinch's repair ended (${repairDone}) and added after it began (${repairStart}): its own race`);
  t.same(jumps, loopRaced ? ['-A PREROUTING -j KUBE-SERVICES', '-A PREROUTING -j KUBE-SERVICES'].slice(0, jumps.length) : ['-A PREROUTING -j KUBE-SERVICES'], `one jump (${loopRaced ? 'or two: the loop raced flinch' : 'flinch and the loop did not race'})`);
  t.ok(jumps.length >= 1 && jumps.length <= 2, 'the jump is there, and flinch added no copy of its own');
  t.notMatch(kube.output(), /FAILED/, 'the loop never failed');
  t.same(repairsIn(agent).filter((l) => /firewall-table .* filter/.test(l)), [], 'nothing of the loop\'s filter chains was repaired');
});
