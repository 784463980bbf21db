import t from 'tap';
import { controlLine, controlSummary, faultsLabelOf } from '../../../harness/report/result-labels.js';

t.test('controls: false positives are verdicts worse than transparent; an unjudged control is neither', async (t) => {
  const migrations = [
    { control: true as const, verdict: 'transparent' as const },
    { control: true as const, verdict: 'noticed' as const },
    { control: true as const, verdict: 'unknown' as const },
    { verdict: 'disrupted' as const },
  ];
  t.same(controlSummary(migrations), { controls: 3, falsePositives: 1, unjudged: 1 });
  t.equal(controlLine(migrations), 'false positives: 1 of 3 controls (33%), 1 not judged (no report)');
  t.equal(controlLine([{ control: true, verdict: 'transparent' }]), 'false positives: 0 of 1 control (0%)');
  t.equal(controlLine([{ verdict: 'noticed' }]), null, 'no controls, no line');
  t.equal(faultsLabelOf({ control: true, faults: [] }), 'control (nothing moved)');
  t.equal(faultsLabelOf({ faults: [] }), 'none');
  t.equal(faultsLabelOf({ faults: ['link-down', 'carrier-flap'] }), 'link-down+carrier-flap');
});
