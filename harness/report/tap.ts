import { VERDICT_ORDER, type LabResults } from './lab-results.js';
import { faultsLabelOf } from './result-labels.js';

/**
 * TAP: one test point per migration, "not ok" when the verdict is worse than expected, details in a YAML block.
 * Version 13, and YAML that Perl's TAP::Harness (the oldest consumer, `prove`) reads as well as node-tap does: it
 * knows no version past 13, and its YAMLish reader takes a quoted list item with ": " inside for a mapping, so each
 * evidence item is written as a mapping of its own.
 */
export function renderTap(results: LabResults): string {
  const lines = ['TAP version 13', `1..${results.migrations.length}`];
  for (const m of results.migrations) {
    const ok = m.passed && !m.error;
    lines.push(`${ok ? 'ok' : 'not ok'} ${m.index} - migration ${m.index} (${faultsLabelOf(m)}): ${m.verdict}${ok ? '' : ` (expected ${results.campaign.expect} or better)`}`);
    lines.push('  ---');
    lines.push(`  verdict: ${m.verdict}`);
    lines.push(`  downtime_ms: ${m.downtimeMs ?? 'null'}`);
    if (m.pauseMs !== undefined) lines.push(`  pause_ms: ${m.pauseMs ?? 'null'}`);
    lines.push(`  clock_lag_ms: ${m.clockLagMs ?? 'null'}`);
    if (m.clockConvergedMs !== undefined) lines.push(`  clock_converged_ms: ${m.clockConvergedMs ?? 'null'}`);
    lines.push(`  blackout_ms: ${m.blackout?.longestGapMs ?? 'null'}`);
    if (m.network) {
      lines.push(`  first_announcement_ms: ${m.network.firstAnnouncementMs ?? 'null'}`, `  bridge_learnt_ms: ${m.network.bridgeLearntMs ?? 'null'}`);
      lines.push(`  announcements: { rarp: ${m.network.counts.rarp}, gratuitous_arp: ${m.network.counts.gratuitousArp}, unsolicited_na: ${m.network.counts.unsolicitedNa} }`);
    }
    if (m.outside) lines.push(`  outside_verdict: ${m.outside.verdict}`, `  outside_clock_lag_ms: ${m.outside.clockLagMs ?? 'null'}`, `  outside_resume_gap_ms: ${m.outside.resumeGapMs ?? 'null'}`);
    if (m.error) lines.push(`  error: ${JSON.stringify(m.error)}`);
    if (m.reasons.length > 0) {
      lines.push('  evidence:');
      for (const reason of m.reasons) {
        const { severity, detail } = splitReason(reason);
        if (severity) lines.push(`    - severity: ${severity}`, `      detail: ${JSON.stringify(detail)}`);
        else lines.push(`    - detail: ${JSON.stringify(detail)}`);
      }
    }
    lines.push('  ...');
  }
  return `${lines.join('\n')}\n`;
}

const SEVERITIES: readonly string[] = VERDICT_ORDER;

/** A reason reads "SEVERITY: what was seen" (the agent's evidence); v0's have no severity. */
function splitReason(reason: string): { severity: string | null; detail: string } {
  const colon = reason.indexOf(': ');
  const prefix = colon > 0 ? reason.slice(0, colon) : '';
  return SEVERITIES.includes(prefix) ? { severity: prefix, detail: reason.slice(colon + 2) } : { severity: null, detail: reason };
}
