import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Report } from '../../agent/report/report-schema.js';

/**
 * The collector's store: SQLite in WAL mode (better-sqlite3, synchronous, one writer). Reports are keyed by
 * (agent id, seq), and each agent's highest applied seq is kept in the same transaction, so a report is stored exactly
 * once however often an agent re-sends it, across collector restarts too. Observations are not stored, only counted:
 * they are the evidence inside the reports already.
 */
export interface AgentIdentity {
  agentId: string;
  machineId: string;
  hostname: string;
  macs: string[];
  xenDomid: number | null;
  agentVersion: string;
}

export interface StoredAgent extends AgentIdentity {
  firstSeenMs: number;
  lastSeenMs: number;
  lastSeq: number;
  lastVerdict: string | null;
  spoolDropped: number;
  reports: number;
  connected: boolean;
}

export interface IncomingData {
  agentId: string;
  seq: number;
  receivedAtMs: number;
  report: Report | null;
}

const SCHEMA_VERSION = 2;

export class ReportStore {
  private readonly db: Database.Database;
  private readonly statements;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL: a committed transaction survives a process crash; only an OS crash can lose the last ones, and the
    // agents still hold those because acks follow commits.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`${file}: store schema ${version} is newer than this collector (${SCHEMA_VERSION})`);
    if (version !== 0 && version < SCHEMA_VERSION) throw new Error(`${file}: store schema ${version} predates this collector (${SCHEMA_VERSION}); start a new store`);
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
        spool_dropped INTEGER NOT NULL DEFAULT 0
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
        INSERT INTO agents (agent_id, machine_id, hostname, macs, xen_domid, agent_version, first_seen_ms, last_seen_ms, spool_dropped)
        VALUES (@agentId, @machineId, @hostname, @macs, @xenDomid, @agentVersion, @now, @now, @spoolDropped)
        ON CONFLICT (agent_id) DO UPDATE SET machine_id = excluded.machine_id, hostname = excluded.hostname, macs = excluded.macs,
          xen_domid = excluded.xen_domid, agent_version = excluded.agent_version, last_seen_ms = excluded.last_seen_ms,
          spool_dropped = excluded.spool_dropped`),
      lastSeq: this.db.prepare('SELECT last_seq AS lastSeq FROM agents WHERE agent_id = ?'),
      insertReport: this.db.prepare(`
        INSERT OR IGNORE INTO reports (agent_id, stream_id, seq, received_ms, episode_id, migration_id, verdict, body)
        VALUES (?, (SELECT stream_id FROM agents WHERE agent_id = ?), ?, ?, ?, ?, ?, ?)`),
      stream: this.db.prepare('SELECT stream_id AS streamId FROM agents WHERE agent_id = ?'),
      newStream: this.db.prepare('UPDATE agents SET stream_id = ?, last_seq = 0 WHERE agent_id = ?'),
      advance: this.db.prepare('UPDATE agents SET last_seq = MAX(last_seq, ?), last_seen_ms = ? WHERE agent_id = ?'),
      verdict: this.db.prepare('UPDATE agents SET last_verdict = ? WHERE agent_id = ?'),
      touch: this.db.prepare('UPDATE agents SET last_seen_ms = ? WHERE agent_id = ?'),
    };
  }

  /**
   * Records a hello; returns the highest seq already applied in the agent's stream (0 for a new agent or a new
   * stream: a reinstalled guest that kept its agent id starts again at 1).
   */
  registerAgent(identity: AgentIdentity, stream: string, spoolDropped: number, nowMs: number): number {
    return this.db.transaction(() => {
      this.statements.upsertAgent.run({ ...identity, macs: JSON.stringify(identity.macs), now: nowMs, spoolDropped });
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
      for (const item of batch) {
        if (item.report) {
          const r = item.report;
          const result = this.statements.insertReport.run(item.agentId, item.agentId, item.seq, item.receivedAtMs, r.episode.id, r.episode.migrationId, r.verdict, JSON.stringify(r));
          if (result.changes > 0) {
            stored += 1;
            this.statements.verdict.run(r.verdict, item.agentId);
          }
        }
        this.statements.advance.run(item.seq, item.receivedAtMs, item.agentId);
      }
    })();
    return stored;
  }

  lastSeq(agentId: string): number {
    return (this.statements.lastSeq.get(agentId) as { lastSeq: number } | undefined)?.lastSeq ?? 0;
  }

  touch(agentId: string, nowMs: number): void {
    this.statements.touch.run(nowMs, agentId);
  }

  agents(): StoredAgent[] {
    const rows = this.db
      .prepare(
        `SELECT a.*, (SELECT COUNT(*) FROM reports r WHERE r.agent_id = a.agent_id) AS reports FROM agents a ORDER BY a.agent_id`,
      )
      .all() as Array<Record<string, unknown>>;
    return rows.map((row) => ({
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
    }));
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

  close(): void {
    this.db.close();
  }
}
