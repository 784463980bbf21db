import os from 'node:os';
import type { LabResults, MigrationResult } from './lab-results.js';
import { controlLine, faultsLabelOf } from './result-labels.js';
import { escapeXml } from './markup-escape.js';


const seconds = (ms: number | null) => ((ms ?? 0) / 1000).toFixed(3);

/**
 * JUnit XML as Jenkins and GitLab read it: one testsuite per campaign, one testcase per migration, a <failure> when
 * the verdict is worse than the campaign's --expect, an <error> when the migration itself failed.
 */
export function renderJunit(results: LabResults): string {
  const failures = results.migrations.filter((m) => !m.passed && !m.error).length;
  const errors = results.migrations.filter((m) => m.error).length;
  const name = `flinch ${results.hypervisor.driver} campaign`;
  const cases = results.migrations.map((m) => testcase(results, m)).join('\n');
  const controls = controlLine(results.migrations);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="flinch" tests="${results.migrations.length}" failures="${failures}" errors="${errors}" time="${seconds(results.wallTimeMs)}">`,
    `  <testsuite name="${escapeXml(name)}" tests="${results.migrations.length}" failures="${failures}" errors="${errors}" skipped="0" time="${seconds(results.wallTimeMs)}" timestamp="${escapeXml(results.startedAt.replace(/\.\d+Z$/, ''))}" hostname="${escapeXml(os.hostname())}">`,
    '    <properties>',
    `      <property name="expect" value="${results.campaign.expect}"/>`,
    ...(controls ? [`      <property name="controls" value="${escapeXml(controls)}"/>`] : []),
    `      <property name="qemu" value="${escapeXml(results.hypervisor.qemu ?? 'unknown')}"/>`,
    `      <property name="guest-kernel" value="${escapeXml(results.guest.kernel)}"/>`,
    '    </properties>',
    cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

function testcase(results: LabResults, m: MigrationResult): string {
  const label = faultsLabelOf(m);
  const lines = [`    <testcase classname="flinch.${escapeXml(m.method ? `${m.driver}.${m.method}` : m.driver)}.${escapeXml(label)}" name="migration ${m.index} (${escapeXml(label)})" time="${seconds(m.totalMs)}">`];
  if (m.error) lines.push(`      <error type="migration" message="${escapeXml(m.error.slice(0, 500))}">${escapeXml(m.error)}</error>`);
  else if (!m.passed) {
    const message = `verdict ${m.verdict} is worse than expected ${results.campaign.expect}`;
    lines.push(`      <failure type="verdict" message="${escapeXml(message)}">${escapeXml([message, ...m.reasons].join('\n'))}</failure>`);
  }
  lines.push(`      <system-out>${escapeXml(summary(m))}</system-out>`);
  lines.push('    </testcase>');
  return lines.join('\n');
}

function summary(m: MigrationResult): string {
  return [
    `verdict: ${m.verdict} (${m.verdictSource})`,
    `downtime: ${m.downtimeMs ?? '-'} ms, ${m.pauseMs !== undefined ? `true pause: ${m.pauseMs ?? '-'} ms, ` : ''}total: ${m.totalMs ?? '-'} ms, guest clock lag: ${m.clockLagMs ?? '-'} ms`,
    ...(m.clockConvergedMs !== undefined ? [`guest clock converged after the step: ${m.clockConvergedMs === null ? 'no' : `${m.clockConvergedMs} ms`}`] : []),
    `blackout: ${m.blackout ? `${m.blackout.longestGapMs} ms, ${m.blackout.lost}/${m.blackout.sent} lost` : 'not measured'}`,
    ...(m.network ? [`network: ${m.network.counts.rarp} RARP, ${m.network.counts.gratuitousArp} gratuitous ARP, ${m.network.counts.unsolicitedNa} unsolicited NA; first ${m.network.firstAnnouncementMs ?? '-'} ms after ${m.network.reference}, bridge moved ${m.network.bridgeLearntMs ?? '-'} ms after`] : []),
    ...(m.outside ? [`outside view (ICMP): ${m.outside.verdict}, clock lag ${m.outside.clockLagMs ?? '-'} ms, gap around the resume ${m.outside.resumeGapMs ?? '-'} ms`, ...m.outside.evidence.map((e) => `outside evidence: ${e}`)] : []),
    ...m.faultRecords.map((f) => `fault ${f.fault} (${f.phase}): ${f.detail}`),
    ...m.reasons.map((r) => `evidence: ${r}`),
  ].join('\n');
}
