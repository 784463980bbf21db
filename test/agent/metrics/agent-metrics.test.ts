import t from 'tap';
import { AgentMetrics } from '../../../agent/metrics/agent-metrics.js';
import { CollectorMetrics } from '../../../harness/collector/collector-metrics.js';
import type { Report } from '../../../contract/report-schema.js';

const at = { realtimeMs: 1, monotonicMs: 1 };

t.test("the agent counts its safety net's actions as they happen, once, also those no report carries", async (t) => {
  const metrics = new AgentMetrics();
  metrics.observation({ kind: 'safety-net', what: 'firewall-table', target: 'firewall nftables inet user', result: 'left-alone', why: 'changed-outside-migration: …', at });
  metrics.observation({ kind: 'safety-net', what: 'address', target: 'va 192.0.2.10/24', result: 'ok', why: 'lost around a migration', at });
  // The report of the episode that carried the repair repeats its action: counted once all the same.
  metrics.report({ verdict: 'healed', remediation: { actions: [{ what: 'address', result: 'ok' }] } } as unknown as Report);
  const text = await metrics.registry.metrics();
  t.match(text, /flinch_remediations_total\{kind="firewall-table",result="left-alone"\} 1\n/);
  t.match(text, /flinch_remediations_total\{kind="address",result="ok"\} 1\n/);
  t.match(text, /flinch_episodes_total\{verdict="healed"\} 1\n/);
});

t.test("the collector counts agents' safety-net actions by result, and a peer cannot invent label values", async (t) => {
  const metrics = new CollectorMetrics();
  metrics.safetyNetAction('left-alone');
  metrics.safetyNetAction('left-alone');
  for (const hostile of ['x'.repeat(10_000), 'ok"} 1\nevil 1', 42, null, undefined]) metrics.safetyNetAction(hostile);
  const text = await metrics.registry.metrics();
  t.match(text, /flinch_safety_net_actions_total\{result="left-alone"\} 2\n/);
  t.match(text, /flinch_safety_net_actions_total\{result="other"\} 5\n/);
  t.equal(text.match(/^flinch_safety_net_actions_total\{/gm)?.length, 2, 'two series, whatever was sent');
});
