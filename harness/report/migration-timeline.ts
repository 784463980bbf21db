import type { MigrationResult } from './lab-results.js';

/** One thing on a migration's time axis: a stretch (endMs set) or a moment, on one of a few tracks. */
export interface TimelineItem {
  track: 'migration' | 'network' | 'faults' | 'guest';
  name: string;
  /** ms after the migration's start. */
  startMs: number;
  endMs?: number;
  detail: string;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/**
 * A migration's timeline, from what results.json holds: its phases (setup, pre-copy, stop-and-copy as the pause,
 * resumed), the gap around the resume, the announcements and the bridge's move, the faults, and what the guest's agent
 * reported (link and xenstore events). The HTML report's timeline and the trace export both draw this.
 */
export function migrationTimeline(m: MigrationResult): TimelineItem[] {
  const items: TimelineItem[] = [];
  const startedAtMs = Date.parse(m.startedAt);
  const t = m.timeline;
  const completedMs = t?.completedMs ?? m.totalMs ?? 0;
  if (m.control) items.push({ track: 'migration', name: 'control (nothing moved)', startMs: 0, endMs: completedMs, detail: 'a sham migration: announced and measured, nothing moved' });
  else if (t?.stoppedMs !== undefined && t.resumedMs !== undefined) {
    const setupEnd = Math.min(m.setupMs ?? 0, t.stoppedMs);
    if (setupEnd > 0) items.push({ track: 'migration', name: 'setup', startMs: 0, endMs: setupEnd, detail: `${m.setupMs} ms (QEMU setup-time)` });
    items.push({ track: 'migration', name: 'pre-copy', startMs: setupEnd, endMs: t.stoppedMs, detail: 'the guest runs while its memory is copied' });
    items.push({ track: 'migration', name: 'stop-and-copy (paused)', startMs: t.stoppedMs, endMs: t.resumedMs, detail: `STOP to RESUME: ${m.pauseMs} ms (QEMU's downtime: ${m.downtimeMs ?? '-'} ms)` });
    items.push({ track: 'migration', name: 'resumed', startMs: t.resumedMs, detail: 'RESUME on the destination' });
  } else {
    items.push({ track: 'migration', name: 'migration', startMs: 0, endMs: completedMs, detail: `total ${m.totalMs ?? '-'} ms, downtime ${m.downtimeMs ?? '-'} ms` });
  }
  const reference = m.network?.reference === 'resume' && t?.resumedMs !== undefined ? t.resumedMs : completedMs;
  if (m.network) {
    const n = m.network;
    if (n.resumeGap) {
      items.push({ track: 'network', name: `no reply (${n.resumeGap.probes})`, startMs: round(reference + n.resumeGap.fromMs), endMs: round(reference + n.resumeGap.toMs), detail: `${round(n.resumeGap.toMs - n.resumeGap.fromMs)} ms without a reply around the resume` });
    }
    for (const a of n.announcements) items.push({ track: 'network', name: a.kind, startMs: round(reference + a.afterResumeMs), detail: `${a.kind} for ${a.announced} on ${a.port}, +${a.afterResumeMs} ms after ${n.reference}` });
    if (n.bridgeLearntMs !== null) items.push({ track: 'network', name: 'bridge moved', startMs: round(reference + n.bridgeLearntMs), detail: `the bridge put the guest's MAC on ${n.bridgeLearntPort}` });
  }
  for (const f of m.faultRecords) items.push({ track: 'faults', name: `${f.fault} (${f.phase})`, startMs: round(f.atMs - startedAtMs), detail: f.detail });
  for (const e of m.linkEvents) {
    items.push({ track: 'guest', name: `link ${e.event ?? e.action}`, startMs: round(completedMs + e.afterCompletionMs), detail: `${e.action} ${e.ifname} (ifindex ${e.ifindex}), carrier ${e.carrier}; as the collector received it` });
  }
  for (const x of m.xenEvents ?? []) items.push({ track: 'guest', name: `xenstore ${x.change}`, startMs: round(completedMs + x.afterCompletionMs), detail: `${x.path}: ${x.previous ?? '-'} → ${x.value ?? '-'}` });
  return items;
}

/**
 * The timeline as Chrome trace-event JSON (the Trace Event Format's "X" complete and "i" instant events, µs), one
 * thread per track: opens in Perfetto (ui.perfetto.dev) and chrome://tracing.
 */
export function traceEvents(m: MigrationResult): { traceEvents: object[]; displayTimeUnit: 'ms'; otherData: Record<string, string> } {
  const tracks = ['migration', 'network', 'faults', 'guest'] as const;
  const pid = m.index;
  const events: object[] = [
    { ph: 'M', name: 'process_name', pid, tid: 0, args: { name: `migration ${m.index}${m.control ? ' (control)' : ''}` } },
    ...tracks.map((track, i) => ({ ph: 'M', name: 'thread_name', pid, tid: i + 1, args: { name: track } })),
  ];
  for (const item of migrationTimeline(m)) {
    const base = { name: item.name, cat: item.track, pid, tid: tracks.indexOf(item.track) + 1, ts: Math.round(item.startMs * 1000), args: { detail: item.detail } };
    events.push(item.endMs !== undefined ? { ...base, ph: 'X', dur: Math.max(1, Math.round((item.endMs - item.startMs) * 1000)) } : { ...base, ph: 'i', s: 't' });
  }
  return { traceEvents: events, displayTimeUnit: 'ms', otherData: { startedAt: m.startedAt, verdict: m.verdict } };
}
