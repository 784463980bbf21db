import type { LabResults } from './lab-results.js';
import { faultsLabelOf } from './result-labels.js';

/** TAP version 14: one test point per migration, "not ok" when the verdict is worse than expected, details in YAML. */
export function renderTap(results: LabResults): string {
  const lines = ['TAP version 14', `1..${results.migrations.length}`];
  for (const m of results.migrations) {
    const ok = m.passed && !m.error;
    lines.push(`${ok ? 'ok' : 'not ok'} ${m.index} - migration ${m.index} (${faultsLabelOf(m)}): ${m.verdict}${ok ? '' : ` (expected ${results.campaign.expect} or better)`}`);
    lines.push('  ---');
    lines.push(`  verdict: ${m.verdict}`);
    lines.push(`  downtime_ms: ${m.downtimeMs ?? 'null'}`);
    lines.push(`  clock_lag_ms: ${m.clockLagMs ?? 'null'}`);
    if (m.clockConvergedMs !== undefined) lines.push(`  clock_converged_ms: ${m.clockConvergedMs ?? 'null'}`);
    lines.push(`  blackout_ms: ${m.blackout?.longestGapMs ?? 'null'}`);
    if (m.error) lines.push(`  error: ${JSON.stringify(m.error)}`);
    if (m.reasons.length > 0) {
      lines.push('  evidence:');
      for (const reason of m.reasons) lines.push(`    - ${JSON.stringify(reason)}`);
    }
    lines.push('  ...');
  }
  return `${lines.join('\n')}\n`;
}
