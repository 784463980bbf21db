import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { AgentIdentity, GuestSystem } from '../../contract/messages.js';
import type { Report } from '../../contract/report-schema.js';
import { HOUR_MS, hourStart, type EpisodeGroupRow, type EpisodeGrouping, type FleetStore } from './store.js';

/**
 * The collector's store: SQLite in WAL mode (better-sqlite3, synchronous, one writer). Reports are keyed by
 * (agent id, seq), and each agent's highest applied seq is kept in the same transaction, so a report is stored exactly
 * once however often an agent re-sends it, across collector restarts too. Observations are not stored, only counted:
 * they are the evidence inside the reports already.
 */
export interface StoredAgent extends AgentIdentity {
  firstSeenMs: number;
  lastSeenMs: number;
  lastSeq: number;
  lastVerdict: string | null;
  spoolDropped: number;
  reports: number;
  connected: boolean;
}

/** An `agents` row (both stores name their columns alike) with its report count, as the store's readers get it. */
export function storedAgentFromRow(row: Record<string, unknown>): StoredAgent {
  return {
    agentId: row.agent_id as string,
    machineId: row.machine_id as string,
    hostname: row.hostname as string,
    macs: JSON.parse(row.macs as string) as string[],
    xenDomid: row.xen_domid as number | null,
    agentVersion: row.agent_version as string,
    firstSeenMs: row.first_seen_ms as number,
    lastSeenMs: row.last_seen_ms as number,
    lastSeq: row.last_seq as number,
    lastVerdict: (row.last_verdict as string | null) ?? null,
    spoolDropped: row.spool_dropped as number,
    reports: row.reports as number,
    connected: false,
    ...(row.guest ? { guest: JSON.parse(row.guest as string) as GuestSystem } : {}),
  };
}

export interface IncomingData {
  agentId: string;
  seq: number;
  receivedAtMs: number;
  report: Report | null;
  /** The report as stored, serialised before the batch so that one that cannot be fails alone, not the batch. */
  body: string | null;
}

/** Bounds on what the store keeps; null: no bound of that kind. */
export interface RetentionPolicy {
  /** Reports received longer ago than this are deleted (ms). */
  maxAgeMs: number | null;
  /** The stored report bodies together are kept under this many bytes, the oldest deleted first. */
  maxBytes: number | null;
  /** One agent's report bodies are kept under this many bytes, its oldest deleted first. */
  perAgentBytes: number | null;
}

export const DEFAULT_RETENTION: RetentionPolicy = { maxAgeMs: 30 * 86_400_000, maxBytes: 8 * 1024 ** 3, perAgentBytes: 64 * 1024 ** 2 };

const SCHEMA_VERSION = 4;

/** How often the checkpoint thread copies the write-ahead log back into the database. */
const CHECKPOINT_INTERVAL_MS = 500;

export class ReportStore implements FleetStore {
  readonly location: string;
  private readonly db: Database.Database;
  private readonly statements;
  private readonly checkpointer: Worker | null = null;

  constructor(file: string, private readonly retention: RetentionPolicy = DEFAULT_RETENTION) {
    this.location = file;
    if (file !== ':memory:') {
      mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      // Every guest's firewall rules are in here: owner-only. SQLite gives its -wal and -shm files the main file's mode.
      if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    }
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL: a committed transaction survives a process crash; only an OS crash can lose the last ones, and the
    // agents still hold those because acks follow commits.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    if (file !== ':memory:') {
      // Checkpoints run on their own thread (wal-checkpoint-worker.ts), not inside the commits that serve the agents.
      this.db.pragma('wal_autocheckpoint = 0');
      // Beside this module: compiled, or (under the tests' TypeScript loader, which workers inherit) the source.
      const worker = new URL(`./wal-checkpoint-worker${path.extname(new URL(import.meta.url).pathname)}`, import.meta.url);
      this.checkpointer = new Worker(worker, { workerData: { file: path.resolve(file), intervalMs: CHECKPOINT_INTERVAL_MS } });
      this.checkpointer.unref();
    }
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`${file}: store schema ${version} is newer than this collector (${SCHEMA_VERSION})`);
    if (version !== 0 && version < 2) throw new Error(`${file}: store schema ${version} predates this collector (${SCHEMA_VERSION}); start a new store`);
    if (version === 2) {
      // 2 → 3: each agent's stored bytes, for its quota.
      this.db.exec(`ALTER TABLE agents ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
        UPDATE agents SET stored_bytes = (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM reports r WHERE r.agent_id = agents.agent_id);`);
    }
    // 3 → 4: the guest's distribution, kernel and hypervisor from the hello (protocol 3), as JSON; null until told.
    if (version === 2 || version === 3) this.db.exec('ALTER TABLE agents ADD COLUMN guest TEXT;');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS agents (
        agent_id TEXT PRIMARY KEY,
        machine_id TEXT NOT NULL,
        hostname TEXT NOT NULL,
        macs TEXT NOT NULL,
        xen_domid INTEGER,
        agent_version TEXT NOT NULL,
        first_seen_ms REAL NOT NULL,
        last_seen_ms REAL NOT NULL,
        stream_id TEXT NOT NULL DEFAULT '',
        last_seq INTEGER NOT NULL DEFAULT 0,
        last_verdict TEXT,
        spool_dropped INTEGER NOT NULL DEFAULT 0,
        stored_bytes INTEGER NOT NULL DEFAULT 0,
        guest TEXT
      );
      CREATE TABLE IF NOT EXISTS reports (
        agent_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        received_ms REAL NOT NULL,
        episode_id TEXT NOT NULL,
        migration_id TEXT,
        verdict TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (agent_id, stream_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS reports_by_time ON reports (received_ms);
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
    this.statements = {
      upsertAgent: this.db.prepare(`
        INSERT INTO agents (agent_id, machine_id, hostname, macs, xen_domid, agent_version, first_seen_ms, last_seen_ms, spool_dropped, guest)
        VALUES (@agentId, @machineId, @hostname, @macs, @xenDomid, @agentVersion, @now, @now, @spoolDropped, @guest)
        ON CONFLICT (agent_id) DO UPDATE SET machine_id = excluded.machine_id, hostname = excluded.hostname, macs = excluded.macs,
          xen_domid = excluded.xen_domid, agent_version = excluded.agent_version, last_seen_ms = excluded.last_seen_ms,
          spool_dropped = excluded.spool_dropped, guest = excluded.guest`),
      lastSeq: this.db.prepare('SELECT last_seq AS lastSeq FROM agents WHERE agent_id = ?'),
      insertReport: this.db.prepare(`
        INSERT OR IGNORE INTO reports (agent_id, stream_id, seq, received_ms, episode_id, migration_id, verdict, body)
        VALUES (?, (SELECT stream_id FROM agents WHERE agent_id = ?), ?, ?, ?, ?, ?, ?)`),
      stream: this.db.prepare('SELECT stream_id AS streamId FROM agents WHERE agent_id = ?'),
      newStream: this.db.prepare('UPDATE agents SET stream_id = ?, last_seq = 0 WHERE agent_id = ?'),
      advance: this.db.prepare('UPDATE agents SET last_seq = MAX(last_seq, ?), last_seen_ms = MAX(last_seen_ms, ?) WHERE agent_id = ?'),
      // One statement per stored report for the agent's row (seq, time, verdict, bytes): at 5 000 reports a second the
      // store's statements were a quarter of the collector's time, four of them on this row.
      advanceStored: this.db.prepare(`UPDATE agents SET last_seq = MAX(last_seq, ?), last_seen_ms = MAX(last_seen_ms, ?), last_verdict = ?, stored_bytes = stored_bytes + ?
        WHERE agent_id = ? RETURNING stored_bytes AS bytes`),
      touch: this.db.prepare('UPDATE agents SET last_seen_ms = MAX(last_seen_ms, ?) WHERE agent_id = ?'),
      addBytes: this.db.prepare('UPDATE agents SET stored_bytes = stored_bytes + ? WHERE agent_id = ?'),
      storedBytes: this.db.prepare('SELECT stored_bytes AS bytes FROM agents WHERE agent_id = ?'),
      oldestOf: this.db.prepare('SELECT stream_id AS streamId, seq, LENGTH(body) AS bytes FROM reports WHERE agent_id = ? ORDER BY received_ms LIMIT 64'),
      deleteReport: this.db.prepare('DELETE FROM reports WHERE agent_id = ? AND stream_id = ? AND seq = ?'),
    };
  }

  /**
   * Records a hello; returns the highest seq already applied in the agent's stream (0 for a new agent or a new
   * stream: a reinstalled guest that kept its agent id starts again at 1).
   */
  registerAgent(identity: AgentIdentity, stream: string, spoolDropped: number, nowMs: number): number {
    return this.db.transaction(() => {
      this.statements.upsertAgent.run({
        ...identity, macs: JSON.stringify(identity.macs), now: nowMs, spoolDropped, guest: identity.guest ? JSON.stringify(identity.guest) : null,
      });
      const current = (this.statements.stream.get(identity.agentId) as { streamId: string }).streamId;
      if (current !== stream) this.statements.newStream.run(stream, identity.agentId);
      return this.lastSeq(identity.agentId);
    })();
  }

  /**
   * Applies a batch in one transaction. Returns how many reports were new; duplicates (seq already applied) are
   * ignored by the primary key.
   */
  apply(batch: readonly IncomingData[]): number {
    let stored = 0;
    this.db.transaction(() => {
      const overQuota = new Set<string>();
      const quota = this.retention.perAgentBytes;
      for (const item of batch) {
        if (item.report && item.body !== null) {
          const r = item.report;
          const result = this.statements.insertReport.run(item.agentId, item.agentId, item.seq, item.receivedAtMs, r.episode.id, r.episode.migrationId, r.verdict, item.body);
          if (result.changes > 0) {
            stored += 1;
            const row = this.statements.advanceStored.get(item.seq, item.receivedAtMs, r.verdict, Buffer.byteLength(item.body), item.agentId) as { bytes: number } | undefined;
            if (quota !== null && row && row.bytes > quota) overQuota.add(item.agentId);
            continue;
          }
        }
        this.statements.advance.run(item.seq, item.receivedAtMs, item.agentId);
      }
      for (const agentId of overQuota) this.enforceAgentQuota(agentId);
    })();
    return stored;
  }

  /** One agent's oldest reports go until it is under its quota: no guest can fill the store for the others. */
  private enforceAgentQuota(agentId: string): void {
    const quota = this.retention.perAgentBytes;
    if (quota === null) return;
    let bytes = (this.statements.storedBytes.get(agentId) as { bytes: number }).bytes;
    while (bytes > quota) {
      const oldest = this.statements.oldestOf.all(agentId) as Array<{ streamId: string; seq: number; bytes: number }>;
      if (oldest.length === 0) break;
      for (const row of oldest) {
        if (bytes <= quota) break;
        this.statements.deleteReport.run(agentId, row.streamId, row.seq);
        this.statements.addBytes.run(-row.bytes, agentId);
        bytes -= row.bytes;
      }
    }
  }

  /**
   * Applies the age and size bounds: reports older than maxAgeMs go, then the oldest until the bodies fit maxBytes.
   * Returns how many reports were deleted. (The file itself shrinks only when SQLite reuses or vacuums the pages.)
   */
  prune(nowMs: number): number {
    return this.db.transaction(() => {
      let deleted = 0;
      if (this.retention.maxAgeMs !== null) {
        const cutoff = nowMs - this.retention.maxAgeMs;
        this.db.prepare(`UPDATE agents SET stored_bytes = stored_bytes - (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM reports r
          WHERE r.agent_id = agents.agent_id AND r.received_ms < ?)`).run(cutoff);
        deleted += this.db.prepare('DELETE FROM reports WHERE received_ms < ?').run(cutoff).changes;
      }
      if (this.retention.maxBytes !== null) {
        let total = (this.db.prepare('SELECT COALESCE(SUM(stored_bytes), 0) AS n FROM agents').get() as { n: number }).n;
        const oldest = this.db.prepare('SELECT agent_id AS agentId, stream_id AS streamId, seq, LENGTH(body) AS bytes FROM reports ORDER BY received_ms LIMIT 1000');
        while (total > this.retention.maxBytes) {
          const rows = oldest.all() as Array<{ agentId: string; streamId: string; seq: number; bytes: number }>;
          if (rows.length === 0) break;
          for (const row of rows) {
            if (total <= this.retention.maxBytes) break;
            this.statements.deleteReport.run(row.agentId, row.streamId, row.seq);
            this.statements.addBytes.run(-row.bytes, row.agentId);
            total -= row.bytes;
            deleted += 1;
          }
        }
      }
      return deleted;
    })();
  }

  /** The bytes of report bodies stored, for one agent or all. */
  storedBytes(agentId?: string): number {
    if (agentId !== undefined) return (this.statements.storedBytes.get(agentId) as { bytes: number } | undefined)?.bytes ?? 0;
    return (this.db.prepare('SELECT COALESCE(SUM(stored_bytes), 0) AS n FROM agents').get() as { n: number }).n;
  }

  lastSeq(agentId: string): number {
    return (this.statements.lastSeq.get(agentId) as { lastSeq: number } | undefined)?.lastSeq ?? 0;
  }

  touch(agentId: string, nowMs: number): void {
    this.statements.touch.run(nowMs, agentId);
  }

  heard(agents: ReadonlyArray<{ agentId: string; heardMs: number }>): void {
    this.db.transaction(() => {
      for (const { agentId, heardMs } of agents) this.statements.touch.run(heardMs, agentId);
    })();
  }

  agents(): StoredAgent[] {
    const rows = this.db
      .prepare(
        `SELECT a.*, (SELECT COUNT(*) FROM reports r WHERE r.agent_id = a.agent_id) AS reports FROM agents a ORDER BY a.agent_id`,
      )
      .all() as Array<Record<string, unknown>>;
    return rows.map(storedAgentFromRow);
  }

  /** Per agent, how many of its reports had each verdict. */
  verdictCounts(): Map<string, Record<string, number>> {
    const counts = new Map<string, Record<string, number>>();
    for (const row of this.db.prepare('SELECT agent_id AS agentId, verdict, COUNT(*) AS n FROM reports GROUP BY agent_id, verdict').all() as Array<{ agentId: string; verdict: string; n: number }>) {
      const entry = counts.get(row.agentId) ?? {};
      entry[row.verdict] = row.n;
      counts.set(row.agentId, entry);
    }
    return counts;
  }

  reportCount(agentId?: string): number {
    const row = (agentId === undefined
      ? this.db.prepare('SELECT COUNT(*) AS n FROM reports').get()
      : this.db.prepare('SELECT COUNT(*) AS n FROM reports WHERE agent_id = ?').get(agentId)) as { n: number };
    return row.n;
  }

  reports(agentId: string): Array<{ seq: number; report: Report }> {
    return (this.db.prepare('SELECT seq, body FROM reports WHERE agent_id = ? ORDER BY seq').all(agentId) as Array<{ seq: number; body: string }>).map((row) => ({
      seq: row.seq,
      report: JSON.parse(row.body) as Report,
    }));
  }

  reportsSince(agentId: string, sinceMs: number): Array<{ receivedMs: number; report: Report }> {
    return (this.db.prepare('SELECT received_ms AS receivedMs, body FROM reports WHERE agent_id = ? AND received_ms >= ? ORDER BY received_ms').all(agentId, sinceMs) as Array<{ receivedMs: number; body: string }>)
      .map((row) => ({ receivedMs: row.receivedMs, report: JSON.parse(row.body) as Report }));
  }

  lastSeenMs(agentId: string): number | null {
    return (this.db.prepare('SELECT last_seen_ms AS ms FROM agents WHERE agent_id = ?').get(agentId) as { ms: number } | undefined)?.ms ?? null;
  }

  episodesBy(grouping: EpisodeGrouping): EpisodeGroupRow[] {
    const key = grouping === 'hour' ? `CAST(received_ms / ${HOUR_MS} AS INTEGER)` : 'migration_id';
    const rows = this.db
      .prepare(`SELECT ${key} AS key, agent_id AS agentId, COUNT(*) AS episodes, SUM(verdict = 'disrupted') AS disrupted FROM reports GROUP BY 1, 2`)
      .all() as Array<{ key: number | string | null; agentId: string; episodes: number; disrupted: number }>;
    return rows.map((row) => ({ ...row, key: grouping === 'hour' ? hourStart(row.key as number) : (row.key as string | null) }));
  }

  close(): void {
    void this.checkpointer?.terminate();
    // What the checkpoint thread had not copied yet goes back now, so the store is one file again when closed.
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // A store that cannot checkpoint still closes; SQLite replays the log at the next open.
    }
    this.db.close();
  }
}
