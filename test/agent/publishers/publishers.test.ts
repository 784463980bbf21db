import t from 'tap';
import { publishTo, type Publisher } from '../../../agent/publishers/publisher.js';
import { humanLinesPublisher, jsonLinesPublisher } from '../../../agent/publishers/stdout-publishers.js';
import { observationError } from '../../../contract/observation.js';
import { sampleReport, tempDir, until } from '../../helpers/collector-fixtures.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';

t.test('a publisher that throws is logged; the others still get every item', async (t) => {
  const got: string[] = [];
  const logged: string[] = [];
  const broken: Publisher = { name: 'broken', observation: () => { throw new Error('disk gone'); } };
  const counting: Publisher = { name: 'counting', observation: (o) => got.push(o.kind), report: (r) => got.push(r.verdict) };
  const outputs = publishTo([broken, counting], (line) => logged.push(line));
  outputs.observation(SAMPLE_OBSERVATIONS.pause);
  outputs.report(sampleReport('a', 1));
  t.same(got, ['pause', 'transparent']);
  t.same(logged, ['publisher broken: disk gone']);
});

t.test('--json lines are typed and carry the contract object itself', async (t) => {
  let text = '';
  const publisher = jsonLinesPublisher((s) => (text += s));
  publisher.observation!(SAMPLE_OBSERVATIONS.link);
  publisher.report!(sampleReport('a', 1));
  const [observation, report] = text.trimEnd().split('\n').map((line) => JSON.parse(line));
  t.match(observation, { type: 'observation', schema: 'flinch.observation/v1' });
  t.equal(observationError(observation.observation), null);
  t.match(report, { type: 'report', schema: 'flinch.report/v1', report: { agentId: 'a' } });
});

t.test('human lines: one a line, and what came from the guest or the network is escaped', async (t) => {
  let text = '';
  const publisher = humanLinesPublisher((s) => (text += s));
  publisher.observation!({ ...SAMPLE_OBSERVATIONS['probe-status'], reason: 'no\nxen\u001b[2J' });
  publisher.observation!(SAMPLE_OBSERVATIONS.link);
  const lines = text.trimEnd().split('\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /probe-status probe=xen status=unavailable reason=no\\x0axen\\x1b\[2J$/);
  t.match(lines[1], /link +ifindex=2 name=eth0 .* action=new event=notify-peers$/);
});

t.test("migration evidence from the guest's own kernel reaches the publishers; a collector's word and a pause do not", async (t) => {
  const { AgentRuntime } = await import('../../../agent/runtime.js');
  const { DEFAULT_EPISODE_OPTIONS } = await import('../../../agent/episodes/episode-engine.js');
  const { DEFAULT_VERDICT_THRESHOLDS } = await import('../../../agent/episodes/verdict.js');
  const { DEFAULT_SAFETY_NET_OPTIONS } = await import('../../../agent/remediation/safety-net.js');
  const { DEFAULT_PROBE_SETTINGS } = await import('../../../probes/registry.js');
  const seen: string[] = [];
  const reports: string[] = [];
  const runtime = new AgentRuntime(
    {
      agentId: 'a', hostname: 'a', agentVersion: '0.1.0', probes: [], probeSettings: DEFAULT_PROBE_SETTINGS,
      episodes: { ...DEFAULT_EPISODE_OPTIONS, settleMs: 100 },
      verdict: DEFAULT_VERDICT_THRESHOLDS, safetyNet: { ...DEFAULT_SAFETY_NET_OPTIONS, mode: 'off' },
      stateDir: tempDir('flinch-state-'), collectorEvidence: true,
    },
    [{ name: 'watching', migrationEvidence: (trigger) => seen.push(trigger.kind), report: (r) => reports.push(r.verdict) }],
    () => undefined,
  );
  await runtime.start();
  t.teardown(() => runtime.stop());
  runtime.ingest(SAMPLE_OBSERVATIONS.pause);
  runtime.announce('starting', 'm-1');
  t.same(seen, [], 'a pause proves no migration, and an announcement came over the very connection it would check');
  runtime.ingest(SAMPLE_OBSERVATIONS.link);
  t.same(seen, ['notify-peers'], "the kernel's announce request does");
  await until('the episode closed and reported', () => reports.length > 0, 5000);
});

t.test('migration evidence is handed to every publisher that asks for it', async (t) => {
  const got: string[] = [];
  const outputs = publishTo([{ name: 'deaf' }, { name: 'ears', migrationEvidence: (trigger) => got.push(trigger.detail) }], () => undefined);
  outputs.migrationEvidence({ kind: 'xen-domid', detail: 'domid 3 → 7', at: SAMPLE_OBSERVATIONS.pause.at });
  t.same(got, ['domid 3 → 7']);
});
