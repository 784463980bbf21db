import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LinkEventName } from '../../probes/observation.js';
import type { VerdictV0 } from '../verdict/verdict-v0.js';
import type { Verdict } from '../../agent/report/report-schema.js';

export const LAB_RESULTS_SCHEMA = 'flinch.lab-results/v0';

/** One link message the guest reported inside a migration's window. */
export interface SeenLinkEvent {
  /** ms after the hypervisor reported the migration complete (negative: during it). */
  afterCompletionMs: number;
  action: 'new' | 'del';
  ifname: string;
  ifindex: number;
  event: LinkEventName | null;
  carrier: number | null;
  carrierChanges: number | null;
}

export interface MigrationResult {
  index: number;
  driver: string;
  from: string;
  to: string;
  startedAt: string;
  totalMs: number | null;
  downtimeMs: number | null;
  setupMs: number | null;
  transferredBytes: number | null;
  /** How far the guest's CLOCK_REALTIME fell behind the host across the migration; null if it could not be measured. */
  clockLagMs: number | null;
  baselineOffsetMs: number | null;
  afterOffsetMs: number | null;
  /** The same lag as the guest's agent saw it on its own (host-offset steps it reported in the window). */
  guestSeenOffsetStepMs: number | null;
  linkEvents: SeenLinkEvent[];
  /** Observations and time replies that reached the collector after completion: proof the guest was still reporting. */
  observationsAfter: number;
  timeRepliesAfter: number;
  /** The agent's verdict on the episode the migration caused, or v0's when no report came. */
  verdict: Verdict | VerdictV0;
  verdictSource: 'agent' | 'v0';
  reasons: string[];
  /** The agent's report on this migration's episode, summarised (the full report is in reports.jsonl beside). */
  episode: {
    id: string;
    durationMs: number;
    triggers: string[];
    disrupted: string[];
    noticed: string[];
    remediation: string;
    timeToHealMs: number | null;
  } | null;
}

export interface LabResults {
  schema: typeof LAB_RESULTS_SCHEMA;
  startedAt: string;
  wallTimeMs: number;
  hypervisor: { driver: string; qemu: string | null };
  guest: { kernel: string; memoryMiB: number; bootToAgentMs: number };
  migrations: MigrationResult[];
  /** How the agent's reports travelled: stored exactly once in the collector's SQLite store (collector.sqlite). */
  channel?: { reportsStored: number; duplicatesDropped: number; rejectedFrames: number; agentConnections: number; spoolDropped: number };
}

/** Written atomically: a reader never sees half a results file. */
export function writeLabResults(outDir: string, results: LabResults): string {
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, 'results.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}
