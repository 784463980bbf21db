// How the safety net decides. The live state is injected (scripted captures) and the mode is dry-run (stepping this
// machine's own clock is not something a test may do: the real step is the QEMU lab's guest-clock-step row), so
// nothing on this machine is read or changed: what is tested is the order of evaluations, not the repairs (the
// scenarios in test/agent/safety-net-scenarios.test.ts do those for real, in namespaces).
import t from 'tap';
import { SafetyNet, DEFAULT_SAFETY_NET_OPTIONS } from '../../../agent/remediation/safety-net.js';
import type { FirewallTableState, LiveState } from '../../../agent/remediation/live-state.js';
import { monotonicMs } from '../../../probes/clock/read-clocks.js';
import { runningTimeDaemon } from '../../../system/clock.js';
import { clockCorrectionMs } from '../../../agent/remediation/clock-heal.js';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TABLE: FirewallTableState = {
  key: 'nftables inet filter', backend: 'nftables', table: 'inet filter', family: 'inet', text: 'table inet filter {\n}\n',
  lines: ['table inet filter', 'chain inet filter input filter hook input priority 0 policy accept', 'rule tcp dport 22 accept'], dynamicSets: [], hash: 'h1',
};
const withTable: LiveState = { interfaces: {}, firewall: { [TABLE.key]: TABLE }, canaries: [] };
const flushed: LiveState = { interfaces: {}, firewall: {}, canaries: [] };
const signal = (detail = 'migration m1 starting') => ({ kind: 'harness-announce', detail, atMs: monotonicMs() });

/** A migration, then the observation of what it did (every loss comes with one, which asks for a check). */
async function migrateAndObserve(net: SafetyNet): Promise<void> {
  await net.migrationSignal(signal());
  await net.check();
}

t.test('a check that fails (a table flushed while it was being listed) does not swallow the check asked for meanwhile', async (t) => {
  const logged: string[] = [];
  let captures = 0;
  let failNext = false;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const capture = async (): Promise<LiveState> => {
    captures += 1;
    if (captures === 1) return withTable; // the baseline
    if (failNext) {
      failNext = false;
      await gate;
      throw new Error('nft list table inet filter: failed (exit 1): Error: No such file or directory');
    }
    return flushed;
  };
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'dry-run' }, null, (line) => logged.push(line), capture, async () => flushed);
  await net.init();
  t.equal(captures, 1, 'baseline captured');

  failNext = true;
  await net.migrationSignal(signal()); // nothing lost yet: no reading
  t.equal(captures, 1, 'a migration signal with nothing lost reads nothing');
  const first = net.check();
  await new Promise((resolve) => setImmediate(resolve));
  const second = net.check(); // the flush's own observation arrives while the first check is still listing
  release();
  await Promise.all([first, second]);
  await net.idle();
  t.match(logged, [/safety net: nft list table inet filter: failed/], 'the failure is logged');
  t.ok(captures >= 3, `the pending check ran after the failed one (${captures} captures)`);
  const actions = net.actionsSince(0);
  t.ok(actions.some((a) => a.what === 'firewall-table' && a.target.includes('inet filter')), `and found the flushed table to restore (${actions.map((a) => `${a.what} ${a.result}`).join(', ')})`);
});

t.test('a repair that failed once and then succeeded counts as repaired; one that only failed does not', async (t) => {
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'on', canaries: false }, null, () => undefined, async () => withTable, async () => withTable);
  const at = { realtimeMs: 0, monotonicMs: 0 };
  const action = (what: 'route' | 'address', result: 'ok' | 'failed') => ({ what, target: `${what} 00:16:3e:f1:1c:01`, why: 'lost during a migration episode', result, beforeHash: null, afterHash: null, durationMs: 1, at });
  t.equal(net.outcome([action('route', 'failed'), action('address', 'ok'), action('route', 'ok')], []), 'healed', 'retried and put back: healed');
  t.equal(net.outcome([action('route', 'ok'), action('address', 'failed')], []), 'partial', 'one repair never succeeded: partial');
  t.equal(net.outcome([action('route', 'failed')], []), 'failed');
});

/** A safety net over scripted states: `states[0]` is the baseline, each later check reads the next one (the last repeats). */
function scripted(states: LiveState[], options: Partial<typeof DEFAULT_SAFETY_NET_OPTIONS> = {}) {
  let i = 0;
  // A fresh copy each time, as a real capture is: the safety net owns (and changes) the baseline it was given.
  const next = async () => structuredClone(states[Math.min(i++, states.length - 1)]!);
  const logged: string[] = [];
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'dry-run', ...options }, null, (l) => logged.push(l), next, next);
  return { net, logged };
}

t.test('a loss with no migration evidence is left alone and reported, never repaired', async (t) => {
  const { net } = scripted([withTable, flushed]);
  await net.init();
  await net.check();
  const actions = net.actionsSince(0);
  t.same(actions.map((a) => a.result), ['left-alone'], 'one left-alone record, no repair');
  t.match(actions[0]!.why, /changed-outside-migration/);
  t.equal(net.outcome(actions, []), 'not-needed', 'leaving something alone is not a repair');
});

t.test('a table somebody wrote to is never rewritten, even right after a migration', async (t) => {
  const edited: LiveState = { ...withTable, firewall: { [TABLE.key]: { ...TABLE, lines: [...TABLE.lines.slice(0, 2), 'rule tcp dport 2222 accept'], hash: 'h2' } } };
  const { net } = scripted([withTable, edited]);
  await net.init();
  await migrateAndObserve(net);
  const actions = net.actionsSince(0);
  t.same(actions.map((a) => a.result), ['left-alone']);
  t.match(actions[0]!.why, /somebody wrote to it/);
});

t.test('a table that only lost definitions around a migration is repaired (dry-run says how)', async (t) => {
  const emptied: LiveState = { ...withTable, firewall: { [TABLE.key]: { ...TABLE, lines: TABLE.lines.slice(0, 2), hash: 'h3' } } };
  const { net } = scripted([withTable, emptied]);
  await net.init();
  await migrateAndObserve(net);
  const actions = net.actionsSince(0);
  t.same(actions.map((a) => `${a.what} ${a.result}`), ['firewall-table dry-run'], JSON.stringify(actions));
  t.match(actions[0]!.why, /lost around a migration \(harness-announce: migration m1 starting\)/);
  t.match(actions[0]!.command, /delete table inet filter/);
});

t.test('damage first seen long before the migration signal is not the migration\'s', async (t) => {
  const { net } = scripted([withTable, flushed], { lookbackMs: 50 });
  await net.init();
  await net.check();
  await new Promise((resolve) => setTimeout(resolve, 120));
  await net.migrationSignal(signal());
  t.same(net.actionsSince(0).map((a) => a.result), ['left-alone'], 'seen 120 ms before the signal, lookback 50 ms: left alone');
});

t.test('damage after the repair window has closed is left alone', async (t) => {
  const { net } = scripted([withTable, withTable, flushed], { repairWindowMs: 50 });
  await net.init();
  await migrateAndObserve(net); // nothing lost yet
  await new Promise((resolve) => setTimeout(resolve, 120));
  await net.check();
  t.same(net.actionsSince(0).map((a) => a.result), ['left-alone']);
});

t.test('a change left alone is adopted once it has lasted, and is then no loss at all', async (t) => {
  const { net, logged } = scripted([withTable, flushed], { adoptAfterMs: 30 });
  await net.init();
  await net.check();
  await new Promise((resolve) => setTimeout(resolve, 80));
  await net.idle();
  t.match(logged.join('\n'), /adopted the change/);
  t.same(net.currentBaseline?.firewall, {}, 'the flushed table is the baseline now');
  await net.migrationSignal(signal());
  t.same(net.actionsSince(0).map((a) => a.result), ['left-alone'], 'and a later migration does not bring the old table back');
});

t.test("a table that exists only for a moment (firewalld's firewalld_policy_drop during a reload) is never learnt, so never brought back", async (t) => {
  const transient: FirewallTableState = { ...TABLE, key: 'nftables inet firewalld_policy_drop', table: 'inet firewalld_policy_drop', hash: 'drop' };
  const during: LiveState = { ...withTable, firewall: { ...withTable.firewall, [transient.key]: transient } };
  const { net } = scripted([withTable, during, withTable], { adoptAfterMs: 200 });
  await net.init();
  await net.check(); // the reload: the table appears
  await net.check(); // and goes
  await net.migrationSignal(signal());
  t.notOk(net.currentBaseline!.firewall[transient.key], 'not in the baseline');
  t.same(net.actionsSince(0), [], 'nothing restored, nothing even to leave alone');
});

t.test('a table that lasts is learnt after --adopt-after, and then a migration that takes it brings it back', async (t) => {
  const added: FirewallTableState = { ...TABLE, key: 'nftables inet docker', table: 'inet docker', hash: 'd' };
  const withAdded: LiveState = { ...withTable, firewall: { ...withTable.firewall, [added.key]: added } };
  const { net } = scripted([withTable, withAdded, withAdded, withTable], { adoptAfterMs: 50 });
  await net.init();
  await net.check();
  t.notOk(net.currentBaseline!.firewall[added.key], 'not yet');
  await new Promise((resolve) => setTimeout(resolve, 120));
  await net.idle();
  t.ok(net.currentBaseline!.firewall[added.key], 'learnt once it lasted');
  await migrateAndObserve(net);
  t.same(net.actionsSince(0).map((a) => `${a.target} ${a.result}`), ['firewall nftables inet docker dry-run']);
});

t.test('a table edited, adopted, and then taken by a migration is repaired: the loss is timed from when it was taken', async (t) => {
  const edited: LiveState = { ...withTable, firewall: { [TABLE.key]: { ...TABLE, lines: [...TABLE.lines, 'rule tcp dport 2222 accept'], hash: 'h4' } } };
  const { net } = scripted([withTable, edited, edited, flushed], { adoptAfterMs: 30, lookbackMs: 50 });
  await net.init();
  await net.check();
  await new Promise((resolve) => setTimeout(resolve, 80)); // adopted meanwhile, and long past the lookback
  await net.idle();
  await migrateAndObserve(net);
  t.same(net.actionsSince(0).map((a) => a.result), ['left-alone', 'dry-run'], 'the edit left alone; the migration\'s loss repaired');
});

t.test('a table edited and taken by a migration before --adopt-after passed is healed to the edit, not to the older baseline', async (t) => {
  // netfilter-persistent's reload, then a migration-time flush within the two seconds the edit waits to be adopted.
  const reloaded: FirewallTableState = { ...TABLE, lines: [...TABLE.lines.slice(0, 2), 'rule tcp dport 2222 accept'], hash: 'h5' };
  const edited: LiveState = { ...withTable, firewall: { [TABLE.key]: reloaded } };
  const { net, logged } = scripted([withTable, edited, flushed], { adoptAfterMs: 60_000 });
  await net.init();
  await net.check();
  t.match(logged.join('\n'), /left alone; adopting in 60 s/, 'the edit waits to be adopted');
  t.equal(net.currentBaseline!.firewall[TABLE.key]!.hash, 'h1', 'not adopted yet');
  await migrateAndObserve(net);
  t.same(net.actionsSince(0).map((a) => `${a.what} ${a.result}`), ['firewall-table left-alone', 'firewall-table dry-run'], 'the edit left alone, the flush repaired');
  t.equal(net.currentBaseline!.firewall[TABLE.key]!.hash, 'h5', 'what it is healed to is the edit');
  t.match(logged.join('\n'), /a migration took what had been changed just before it .*healing to that change, not to the older baseline/);
});

t.test('a change waiting to be adopted in one table does not move what a migration took from another', async (t) => {
  const other: FirewallTableState = { ...TABLE, key: 'nftables inet other', table: 'inet other', hash: 'o1' };
  const both: LiveState = { ...withTable, firewall: { [TABLE.key]: TABLE, [other.key]: other } };
  const editedOther: LiveState = { ...withTable, firewall: { [TABLE.key]: TABLE, [other.key]: { ...other, lines: [...other.lines, 'rule udp dport 53 accept'], hash: 'o2' } } };
  const takenFirst: LiveState = { ...withTable, firewall: { [other.key]: editedOther.firewall[other.key]! } };
  const { net } = scripted([both, editedOther, takenFirst], { adoptAfterMs: 60_000 });
  await net.init();
  await net.check();
  await migrateAndObserve(net);
  t.equal(net.currentBaseline!.firewall[TABLE.key]!.hash, 'h1', 'the taken table is healed to its baseline');
  t.equal(net.currentBaseline!.firewall[other.key]!.hash, 'o1', 'the other table\'s edit still waits out --adopt-after');
  t.same(net.actionsSince(0).map((a) => `${a.target} ${a.result}`), ['firewall nftables inet other left-alone', 'firewall nftables inet filter dry-run']);
});

t.test('the clock: brought back after a migration left it a second or more from the host, dry-run says how', async (t) => {
  const { net } = scripted([withTable]);
  await net.init();
  await net.healClock(-400, 'after migration m1');
  t.same(net.actionsSince(0), [], 'under --clock-heal-ms (1 s): left as it is');
  await net.healClock(-3210, 'after migration m1');
  const [action] = net.actionsSince(0);
  t.equal(action!.what, 'clock');
  t.equal(action!.result, 'dry-run');
  t.match(action!.why, /after migration m1: the guest clock is -3\.210 s behind the host's/);
  const daemon = runningTimeDaemon();
  if (daemon === null) t.match(action!.command, /^date -u -s @\d+$/, 'no time daemon here: CLOCK_REALTIME would be stepped');
  else t.match(action!.command ?? action!.error, /chronyc makestep|systemctl restart|ntpd/, `${daemon} runs here: asked to step`);
  t.equal(net.outcome(net.actionsSince(0), []), 'dry-run');
  const off = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'off' }, null, () => undefined, async () => withTable, async () => withTable);
  await off.healClock(-5000, 'x');
  t.same(off.actionsSince(0), [], 'remediation off: never');
});

t.test('which time daemon runs is read from /proc/PID/comm (cut at 15 characters)', async (t) => {
  const proc = mkdtempSync(path.join(os.tmpdir(), 'flinch-proc-'));
  const add = (pid: string, comm: string) => {
    mkdirSync(path.join(proc, pid));
    writeFileSync(path.join(proc, pid, 'comm'), `${comm}\n`);
  };
  add('1', 'init');
  add('77', 'sshd');
  t.equal(runningTimeDaemon(proc), null);
  add('812', 'systemd-timesyn');
  t.equal(runningTimeDaemon(proc), 'systemd-timesyncd');
  t.equal(runningTimeDaemon('/nonexistent'), null);
});

t.test('the clock is corrected by what the migration moved, only after a migration the guest\'s own kernel saw', async (t) => {
  const at = { realtimeMs: 0, monotonicMs: 0 };
  const announce = { kind: 'harness-announce' as const, detail: 'm1', at };
  const offsetStep = { kind: 'host-offset-step' as const, detail: 'offset moved', at };
  const notify = { kind: 'notify-peers' as const, detail: 'eth0', at };
  const pause = (magnitudeMs: number) => ({ kind: 'pause' as const, detail: 'woke late', magnitudeMs, at });
  t.equal(clockCorrectionMs({ triggers: [announce, notify] }, -5066, 1000), 5066, 'a QEMU stop froze the guest clocks: the offset is the measure');
  t.equal(clockCorrectionMs({ triggers: [notify, { kind: 'clock-step', detail: 'realtime moved', magnitudeMs: 4550, at }] }, 4480, 1000), -4480, 'a step: back by what the host saw');
  t.equal(clockCorrectionMs({ triggers: [notify, pause(3100)] }, -400, 1000), null, 'under --clock-heal-ms: left');
  t.equal(clockCorrectionMs({ triggers: [announce, offsetStep, pause(3100)] }, -3200, 1000), null, 'only the collector says a migration happened: left');
  t.equal(clockCorrectionMs({ triggers: [notify, pause(200)] }, -3600_000, 1000), null, 'a claimed hour against a 200 ms pause the guest saw: left');
});

t.test('how long the clock took to converge is audited, and is no repair of its own', async (t) => {
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'on', canaries: false }, null, () => undefined, async () => withTable, async () => withTable);
  net.clockConverged(840, null);
  net.clockConverged(null, 120_000);
  const [ok, late] = net.actionsSince(0);
  t.match(ok, { what: 'clock-converged', result: 'ok', durationMs: 840 });
  t.match(late, { what: 'clock-converged', result: 'failed', error: 'not within 120 s' });
  t.equal(net.outcome(net.actionsSince(0), []), 'not-needed', 'a reading, not a repair');
});
