import type { AgentIdentity } from '../../contract/messages.js';
import type { Report } from '../../contract/report-schema.js';
import type { IncomingData, RetentionPolicy, StoredAgent } from './report-store.js';

/** A value now (SQLite answers synchronously) or later (PostgreSQL over the network). */
export type Awaitable<T> = T | Promise<T>;

/** One group of a store's reports (an hour, or a migration) for one agent: how many episodes, how many disrupted. */
export interface EpisodeGroupRow {
  key: string | null;
  agentId: string;
  episodes: number;
  disrupted: number;
}

export type EpisodeGrouping = 'hour' | 'migration';

/**
 * What a collector and `flinch fleet status` need of a store. Two implementations with one meaning: ReportStore
 * (SQLite, embedded, one collector) and PostgresStore (one store shared by interchangeable collectors). Both store a
 * report exactly once per (agent, stream, seq), with the agent's last applied seq in the same transaction.
 */
export interface FleetStore {
  /** Where the store is, for logs: a file, or a PostgreSQL URL without its password. */
  readonly location: string;
  registerAgent(identity: AgentIdentity, stream: string, spoolDropped: number, nowMs: number): Awaitable<number>;
  apply(batch: readonly IncomingData[]): Awaitable<number>;
  lastSeq(agentId: string): Awaitable<number>;
  touch(agentId: string, nowMs: number): Awaitable<void>;
  /** Each agent was heard from (a frame or a pong) at its time: its last-seen moves forward to it, never back. */
  heard(agents: ReadonlyArray<{ agentId: string; heardMs: number }>): Awaitable<void>;
  prune(nowMs: number): Awaitable<number>;
  agents(): Awaitable<StoredAgent[]>;
  verdictCounts(): Awaitable<Map<string, Record<string, number>>>;
  reportCount(agentId?: string): Awaitable<number>;
  reports(agentId: string): Awaitable<Array<{ seq: number; report: Report }>>;
  /** An agent's reports received at or after `sinceMs` (host ms), oldest first: what a rollout reads a verdict from. */
  reportsSince(agentId: string, sinceMs: number): Awaitable<Array<{ receivedMs: number; report: Report }>>;
  /** When the store last heard from an agent (any message, or its connection closing); null for one it never did. */
  lastSeenMs(agentId: string): Awaitable<number | null>;
  /** Episodes per agent, grouped by the hour they were received in (key: the hour's start, ISO) or by migration id. */
  episodesBy(grouping: EpisodeGrouping): Awaitable<EpisodeGroupRow[]>;
  close(): Awaitable<void>;
}

export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

/** A store named by a file (SQLite) or a postgres:// URL; the PostgreSQL client is loaded only for the latter. */
export async function openStore(spec: string, retention?: RetentionPolicy): Promise<FleetStore> {
  if (isPostgresUrl(spec)) {
    const { PostgresStore } = await import('./postgres-store.js');
    return PostgresStore.open(spec, retention);
  }
  const { ReportStore } = await import('./report-store.js');
  return new ReportStore(spec, retention);
}

export const HOUR_MS = 3_600_000;

/** An hour as the stores group reports by it (whole hours since the epoch), as the ISO time it starts at. */
export function hourStart(hour: number): string {
  return new Date(hour * HOUR_MS).toISOString();
}
