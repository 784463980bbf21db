import t from 'tap';
import { publishTo, type Publisher } from '../../../agent/publishers/publisher.js';
import { humanLinesPublisher, jsonLinesPublisher } from '../../../agent/publishers/stdout-publishers.js';
import { observationError } from '../../../contract/observation.js';
import { sampleReport } from '../../helpers/collector-fixtures.js';
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
