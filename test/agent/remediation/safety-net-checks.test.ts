// How the safety net schedules its checks. The live state is injected (scripted captures) and the mode is dry-run,
// so nothing on this machine is read or changed: what is tested is the order of evaluations, not the repairs (the
// scenarios in test/agent/safety-net-scenarios.test.ts do those for real, in namespaces).
import t from 'tap';
import { SafetyNet, DEFAULT_SAFETY_NET_OPTIONS } from '../../../agent/remediation/safety-net.js';
import type { LiveState } from '../../../agent/remediation/live-state.js';

const TABLE = { key: 'nftables inet filter', backend: 'nftables' as const, table: 'inet filter', family: 'inet', text: 'table inet filter {\n}\n', hash: 'h1' };
const withTable: LiveState = { interfaces: {}, firewall: { [TABLE.key]: TABLE } };
const flushed: LiveState = { interfaces: {}, firewall: {} };

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
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'dry-run' }, null, (line) => logged.push(line), capture, async () => ({}), async () => flushed.firewall);
  await net.init();
  t.equal(captures, 1, 'baseline captured');

  failNext = true;
  const first = net.check(() => true);
  await new Promise((resolve) => setImmediate(resolve));
  const second = net.check(() => true); // the flush's own observation arrives while the first check is still listing
  release();
  await Promise.all([first, second]);
  await net.idle();
  t.match(logged, [/safety net: nft list table inet filter: failed/], 'the failure is logged');
  t.ok(captures >= 3, `the pending check ran after the failed one (${captures} captures)`);
  const actions = net.actionsSince(0);
  t.ok(actions.some((a) => a.what === 'firewall-table' && a.target.includes('inet filter')), `and found the flushed table to restore (${actions.map((a) => `${a.what} ${a.result}`).join(', ')})`);
});

t.test('a repair that failed once and then succeeded counts as repaired; one that only failed does not', async (t) => {
  const net = new SafetyNet({ ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'on' }, null, () => undefined, async () => withTable, async () => ({}), async () => withTable.firewall);
  const at = { realtimeMs: 0, monotonicMs: 0 };
  const action = (what: 'route' | 'address', result: 'ok' | 'failed') => ({ what, target: `${what} 00:16:3e:f1:1c:01`, why: 'lost during a migration episode', result, beforeHash: null, afterHash: null, durationMs: 1, at });
  t.equal(net.outcome([action('route', 'failed'), action('address', 'ok'), action('route', 'ok')], []), 'healed', 'retried and put back: healed');
  t.equal(net.outcome([action('route', 'ok'), action('address', 'failed')], []), 'partial', 'one repair never succeeded: partial');
  t.equal(net.outcome([action('route', 'failed')], []), 'failed');
});
