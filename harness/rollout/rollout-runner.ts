import { setTimeout as sleep } from 'node:timers/promises';
import type { Report } from '../../contract/report-schema.js';
import { CampaignJournal, type JournalKind } from '../campaign/campaign-journal.js';
import type { MigrationTiming } from '../drivers/migration-driver.js';
import type { FleetStore } from '../collector/store.js';
import { hostNowMs } from '../host-clock.js';

/** One guest of a rollout: how to move it, and the agent id its reports come under. */
export interface RolloutGuest {
  /** What the operator calls it (a libvirt domain, a Xen domain, a simulated guest). */
  name: string;
  agentId: string;
  migrate(): Promise<MigrationTiming>;
}

/**
 * What a guest's migration came to. `silent`: no report, and its agent not heard from since the migration (a guest
 * that crashed says nothing); `failed`: the migration itself failed (the guest is where it was, or nowhere).
 */
export type RolloutVerdict = Report['verdict'] | 'silent' | 'failed';

/** The verdicts that count against a rollout. */
export const HALTING_VERDICTS: readonly RolloutVerdict[] = ['disrupted', 'silent', 'failed'];

export interface GuestOutcome {
  /** The guest's place in the rollout's list (the journal's key). */
  index: number;
  guest: string;
  agentId: string;
  startedAtMs: number;
  completedAtMs: number;
  verdict: RolloutVerdict;
  /** The report's evidence, or why there is none. */
  evidence: string[];
  error?: string;
}

export interface RolloutSettings {
  /** Guests migrated at once, a wave. */
  parallel: number;
  /** The rollout stops when the share of halting verdicts among the last `window` guests is above this (0..1). */
  haltAt: number;
  window: number;
  /** After a migration, how long to wait for the agent's report. */
  verdictTimeoutMs: number;
  /**
   * After the first report, how much longer to gather: one migration can end more than one episode (the announce
   * at once, a clock lag only when time exchanges resume), and the first to arrive need not be the worst.
   */
  verdictGraceMs: number;
}

export interface RolloutOutcome {
  migrated: GuestOutcome[];
  /** Why the rollout stopped early; null when every guest was migrated. */
  halted: { share: number; window: number; worst: GuestOutcome[] } | null;
  /** Guests left untouched, in order. */
  untouched: string[];
}

const ROLLOUT_JOURNAL: JournalKind = { file: 'rollout.jsonl', format: 'flinch.rollout-journal/v1', run: 'rollout', unit: 'guest(s)' };
/** Reports received this long before the migration began still count: the collector's host clock may lag this one's. */
const CLOCK_SLACK_MS = 1000;
const POLL_MS = 500;
const SEVERITY: Record<RolloutVerdict, number> = { transparent: 0, noticed: 1, healed: 2, disrupted: 3, silent: 4, failed: 5 };

/**
 * Migrates guests in waves of `parallel`, reads each one's verdict from the collectors' store, and stops before the
 * next wave once the share of disrupted (or silent, or failed) guests among the last `window` passes `haltAt`,
 * leaving the rest untouched. Resumable: the journal in `outDir` holds every guest done; run again with the same
 * guests, it goes on from there: a halted rollout halts again before moving anyone, unless given a higher --halt-at.
 */
export async function runRollout(
  guests: readonly RolloutGuest[],
  settings: RolloutSettings,
  store: Pick<FleetStore, 'reportsSince' | 'lastSeenMs'>,
  outDir: string,
  log: (line: string) => void,
): Promise<RolloutOutcome> {
  // The guests make the rollout; its limits do not: an operator who looked into a halt may go on with another one.
  const identity = { guests: guests.map((g) => [g.name, g.agentId]) };
  const journal = CampaignJournal.open<GuestOutcome>(outDir, identity, log, ROLLOUT_JOURNAL);
  const done = () => [...journal.done.values()].sort((a, b) => a.completedAtMs - b.completedAtMs);
  const pending = guests.map((guest, i) => ({ guest, index: i + 1 })).filter(({ index }) => !journal.done.has(index));
  for (;;) {
    const halted = haltReason(done(), settings);
    if (halted) return { migrated: done(), halted, untouched: pending.map(({ guest }) => guest.name) };
    if (pending.length === 0) return { migrated: done(), halted: null, untouched: [] };
    const wave = pending.splice(0, settings.parallel);
    log(`wave of ${wave.length}: ${wave.map(({ guest }) => guest.name).join(', ')}`);
    const outcomes = await Promise.all(wave.map(({ guest, index }) => migrateAndJudge(guest, index, settings, store)));
    for (const outcome of outcomes) {
      journal.record(outcome);
      log(`${outcome.guest}: ${outcome.verdict}${outcome.evidence.length ? ` (${outcome.evidence.slice(0, 3).join('; ')})` : ''}`);
    }
  }
}

/** The share of halting verdicts among the last `window` guests, when it is above the limit. */
export function haltReason(done: readonly GuestOutcome[], settings: Pick<RolloutSettings, 'haltAt' | 'window'>): RolloutOutcome['halted'] {
  const recent = done.slice(-settings.window);
  if (recent.length === 0) return null;
  const bad = recent.filter((o) => HALTING_VERDICTS.includes(o.verdict));
  const share = bad.length / recent.length;
  return share > settings.haltAt ? { share, window: recent.length, worst: bad } : null;
}

async function migrateAndJudge(guest: RolloutGuest, index: number, settings: RolloutSettings, store: Pick<FleetStore, 'reportsSince' | 'lastSeenMs'>): Promise<GuestOutcome> {
  const base = { index, guest: guest.name, agentId: guest.agentId };
  const startedAtMs = hostNowMs();
  let timing: MigrationTiming;
  try {
    timing = await guest.migrate();
  } catch (error) {
    const message = (error as Error).message;
    return { ...base, startedAtMs, completedAtMs: hostNowMs(), verdict: 'failed', evidence: [`the migration failed: ${message}`], error: message };
  }
  const completedAtMs = timing.completedAtMs;
  let deadline = hostNowMs() + settings.verdictTimeoutMs;
  let gathering = false;
  for (;;) {
    const reports = await store.reportsSince(guest.agentId, startedAtMs - CLOCK_SLACK_MS);
    if (reports.length > 0 && !gathering) {
      gathering = true;
      deadline = Math.min(deadline, hostNowMs() + settings.verdictGraceMs);
    }
    if (hostNowMs() > deadline || (gathering && settings.verdictGraceMs === 0)) {
      if (reports.length === 0) break;
      // The worst verdict, and every episode's evidence, the worst's first.
      const ordered = reports.map((r) => r.report).sort((a, b) => SEVERITY[b.verdict] - SEVERITY[a.verdict]);
      const evidence = [...new Set(ordered.flatMap((r) => r.evidence.map((e) => `${e.kind}: ${e.detail}`)))];
      return { ...base, startedAtMs, completedAtMs, verdict: ordered[0]!.verdict, evidence };
    }
    await sleep(POLL_MS);
  }
  const lastSeen = await store.lastSeenMs(guest.agentId);
  if (lastSeen !== null && lastSeen >= completedAtMs) {
    return { ...base, startedAtMs, completedAtMs, verdict: 'transparent', evidence: [`no episode reported within ${settings.verdictTimeoutMs / 1000} s; the agent was heard from after the migration`] };
  }
  return {
    ...base, startedAtMs, completedAtMs, verdict: 'silent',
    evidence: [`no report within ${settings.verdictTimeoutMs / 1000} s, and the agent not heard from since the migration${lastSeen === null ? ' (never heard from at all)' : ` (last at ${new Date(lastSeen).toISOString()})`}`],
  };
}
