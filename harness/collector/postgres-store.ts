import pg from 'pg';
import type { AgentIdentity } from '../../contract/messages.js';
import type { Report } from '../../contract/report-schema.js';
import { DEFAULT_RETENTION, storedAgentFromRow, type IncomingData, type RetentionPolicy, type StoredAgent } from './report-store.js';
import { HOUR_MS, hourStart, type EpisodeGroupRow, type EpisodeGrouping, type FleetStore } from './store.js';

/**
 * The shared store: one PostgreSQL database behind any number of collectors, so that they are interchangeable and an
 * agent can move between them. The same tables and the same guarantees as ReportStore (SQLite): a report is stored
 * once per (agent, stream, seq), and the agent's last applied seq moves in the same transaction; two collectors that
 * get the same report (an agent moved before its ack arrived) store it once, because the primary key decides.
 */
const SCHEMA_VERSION = 1;
const POOL_SIZE = 4;
/** Any fixed number: collectors that start together create the schema one at a time. */
const SCHEMA_LOCK = 0x666c696e;
/** Only one collector at a time applies the retention bounds; the others skip that round. */
const PRUNE_LOCK = 0x666c6970;

/** bigint (seq, bytes, counts) as a JavaScript number: every value the store keeps is far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export class PostgresStore implements FleetStore {
  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
    private readonly retention: RetentionPolicy,
  ) {}

  /** Connects, then creates or checks the schema. A newer schema than this collector knows is refused, untouched. */
  static async open(url: string, retention: RetentionPolicy = DEFAULT_RETENTION): Promise<PostgresStore> {
    // Commits go one at a time (IngestBatch); the other connections serve hellos and housekeeping. (10 instead of 4
    // did not move a dead collector's agents any faster here: on two cores the CPU is the limit, not the pool.)
    const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000, types });
    // A connection the server drops while idle must not throw out of the collector; the next query gets a new one.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool, redact(url), retention);
    try {
      await store.transaction(async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await client.query('CREATE TABLE IF NOT EXISTS flinch_schema (version INTEGER NOT NULL)');
        const found = (await client.query<{ version: number }>('SELECT version FROM flinch_schema')).rows[0]?.version;
        if (found !== undefined && found > SCHEMA_VERSION) throw new Error(`store schema ${found} is newer than this collector (${SCHEMA_VERSION})`);
        if (found === SCHEMA_VERSION) return;
        await client.query(`
          CREATE TABLE agents (
            agent_id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL,
            hostname TEXT NOT NULL,
            macs TEXT NOT NULL,
            xen_domid INTEGER,
            agent_version TEXT NOT NULL,
            first_seen_ms DOUBLE PRECISION NOT NULL,
            last_seen_ms DOUBLE PRECISION NOT NULL,
            stream_id TEXT NOT NULL DEFAULT '',
            last_seq BIGINT NOT NULL DEFAULT 0,
            last_verdict TEXT,
            spool_dropped BIGINT NOT NULL DEFAULT 0,
            stored_bytes BIGINT NOT NULL DEFAULT 0,
            guest TEXT
          );
          CREATE TABLE reports (
            agent_id TEXT NOT NULL,
            stream_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            received_ms DOUBLE PRECISION NOT NULL,
            episode_id TEXT NOT NULL,
            migration_id TEXT,
            verdict TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (agent_id, stream_id, seq)
          );
          CREATE INDEX reports_by_time ON reports (received_ms);
          INSERT INTO flinch_schema (version) VALUES (${SCHEMA_VERSION});`);
      });
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw new Error(`${store.location}: ${(error as Error).message}`);
    }
    return store;
  }

  async registerAgent(identity: AgentIdentity, stream: string, spoolDropped: number, nowMs: number): Promise<number> {
    // One statement: a new stream (a reinstalled guest that kept its id) starts again at 0, the same stream keeps its seq.
    const { rows } = await this.pool.query<{ last_seq: number }>(
      `INSERT INTO agents (agent_id, machine_id, hostname, macs, xen_domid, agent_version, first_seen_ms, last_seen_ms, spool_dropped, guest, stream_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)
       ON CONFLICT (agent_id) DO UPDATE SET machine_id = excluded.machine_id, hostname = excluded.hostname, macs = excluded.macs,
         xen_domid = excluded.xen_domid, agent_version = excluded.agent_version, last_seen_ms = excluded.last_seen_ms,
         spool_dropped = excluded.spool_dropped, guest = excluded.guest, stream_id = excluded.stream_id,
         last_seq = CASE WHEN agents.stream_id = excluded.stream_id THEN agents.last_seq ELSE 0 END
       RETURNING last_seq`,
      [identity.agentId, identity.machineId, identity.hostname, JSON.stringify(identity.macs), identity.xenDomid, identity.agentVersion, nowMs, spoolDropped,
        identity.guest ? JSON.stringify(identity.guest) : null, stream],
    );
    return rows[0]!.last_seq;
  }

  async apply(batch: readonly IncomingData[]): Promise<number> {
    if (batch.length === 0) return 0;
    // Rows in one order (agent, seq) in every collector: two that write the same agent's rows never deadlock.
    const items = [...batch].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : a.seq - b.seq));
    const reports = items.filter((item) => item.report && item.body !== null);
    const ids = [...new Set(items.map((item) => item.agentId))];
    return this.transaction(async (client) => {
      // The batch's agents are locked first, in one order: another collector writing one of them (an agent that moved)
      // waits here instead of holding report rows this one needs, and the reverse; no two transactions deadlock.
      await lockAgents(client, ids);
      const stored = new Map<string, { bytes: number; seq: number; verdict: string }>();
      let count = 0;
      if (reports.length > 0) {
        const inserted = await client.query<{ agent_id: string; seq: number; verdict: string; bytes: number }>(
          `INSERT INTO reports (agent_id, stream_id, seq, received_ms, episode_id, migration_id, verdict, body)
           SELECT u.agent_id, a.stream_id, u.seq, u.received_ms, u.episode_id, u.migration_id, u.verdict, u.body
           FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::text[], $5::text[], $6::text[], $7::text[])
             WITH ORDINALITY AS u(agent_id, seq, received_ms, episode_id, migration_id, verdict, body, n)
           JOIN agents a ON a.agent_id = u.agent_id
           ORDER BY u.n
           ON CONFLICT DO NOTHING
           RETURNING agent_id, seq, verdict, octet_length(body) AS bytes`,
          [
            reports.map((i) => i.agentId), reports.map((i) => i.seq), reports.map((i) => i.receivedAtMs), reports.map((i) => i.report!.episode.id),
            reports.map((i) => i.report!.episode.migrationId), reports.map((i) => i.report!.verdict), reports.map((i) => i.body!),
          ],
        );
        count = inserted.rows.length;
        for (const row of inserted.rows) {
          const entry = stored.get(row.agent_id) ?? { bytes: 0, seq: 0, verdict: row.verdict };
          entry.bytes += row.bytes;
          if (row.seq >= entry.seq) Object.assign(entry, { seq: row.seq, verdict: row.verdict });
          stored.set(row.agent_id, entry);
        }
      }
      const perAgent = new Map<string, { seq: number; seen: number }>();
      for (const item of items) {
        const entry = perAgent.get(item.agentId) ?? { seq: 0, seen: 0 };
        perAgent.set(item.agentId, { seq: Math.max(entry.seq, item.seq), seen: Math.max(entry.seen, item.receivedAtMs) });
      }
      const updated = await client.query<{ agent_id: string; stored_bytes: number }>(
        `UPDATE agents a SET last_seq = GREATEST(a.last_seq, u.seq), last_seen_ms = GREATEST(a.last_seen_ms, u.seen),
           last_verdict = COALESCE(u.verdict, a.last_verdict), stored_bytes = a.stored_bytes + u.bytes
         FROM (SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::text[], $5::bigint[]) AS t(agent_id, seq, seen, verdict, bytes) ORDER BY agent_id) u
         WHERE a.agent_id = u.agent_id
         RETURNING a.agent_id, a.stored_bytes`,
        [ids, ids.map((id) => perAgent.get(id)!.seq), ids.map((id) => perAgent.get(id)!.seen), ids.map((id) => stored.get(id)?.verdict ?? null), ids.map((id) => stored.get(id)?.bytes ?? 0)],
      );
      const quota = this.retention.perAgentBytes;
      if (quota !== null) {
        for (const row of updated.rows) if (stored.has(row.agent_id) && row.stored_bytes > quota) await this.enforceAgentQuota(client, row.agent_id, quota);
      }
      return count;
    });
  }

  /** The agent's newest reports that fit its quota stay; the older ones go, so no guest fills the store for the others. */
  private async enforceAgentQuota(client: pg.PoolClient, agentId: string, quota: number): Promise<void> {
    await client.query(
      `WITH ranked AS (
         SELECT stream_id, seq, SUM(octet_length(body)) OVER (ORDER BY received_ms DESC, seq DESC) AS newer_bytes FROM reports WHERE agent_id = $1),
       gone AS (
         DELETE FROM reports r USING ranked k WHERE r.agent_id = $1 AND r.stream_id = k.stream_id AND r.seq = k.seq AND k.newer_bytes > $2
         RETURNING octet_length(r.body) AS bytes)
       UPDATE agents SET stored_bytes = stored_bytes - (SELECT COALESCE(SUM(bytes), 0) FROM gone) WHERE agent_id = $1`,
      [agentId, quota],
    );
  }

  async prune(nowMs: number): Promise<number> {
    return this.transaction(async (client) => {
      const locked = (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [PRUNE_LOCK])).rows[0]!.locked;
      if (!locked) return 0;
      // Whose reports go is known only as they go: every agent is locked first, in the order apply locks them.
      await lockAgents(client, null);
      let deleted = 0;
      if (this.retention.maxAgeMs !== null) {
        deleted += await deleteReturning(client, 'SELECT agent_id, stream_id, seq FROM reports WHERE received_ms < $1', [nowMs - this.retention.maxAgeMs]);
      }
      if (this.retention.maxBytes !== null) {
        const total = (await client.query<{ n: number }>('SELECT COALESCE(SUM(stored_bytes), 0)::bigint AS n FROM agents')).rows[0]!.n;
        if (total > this.retention.maxBytes) {
          deleted += await deleteReturning(
            client,
            `SELECT agent_id, stream_id, seq FROM (SELECT agent_id, stream_id, seq, SUM(octet_length(body)) OVER (ORDER BY received_ms DESC, agent_id DESC, seq DESC) AS newer_bytes FROM reports) k
             WHERE newer_bytes > $1`,
            [this.retention.maxBytes],
          );
        }
      }
      return deleted;
    });
  }

  async lastSeq(agentId: string): Promise<number> {
    return (await this.pool.query<{ last_seq: number }>('SELECT last_seq FROM agents WHERE agent_id = $1', [agentId])).rows[0]?.last_seq ?? 0;
  }

  async touch(agentId: string, nowMs: number): Promise<void> {
    await this.pool.query('UPDATE agents SET last_seen_ms = GREATEST(last_seen_ms, $1) WHERE agent_id = $2', [nowMs, agentId]);
  }

  async heard(agents: ReadonlyArray<{ agentId: string; heardMs: number }>): Promise<void> {
    if (agents.length === 0) return;
    const sorted = [...agents].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
    await this.transaction(async (client) => {
      await lockAgents(client, sorted.map((a) => a.agentId));
      await client.query(
        `UPDATE agents a SET last_seen_ms = GREATEST(a.last_seen_ms, u.heard) FROM unnest($1::text[], $2::float8[]) AS u(agent_id, heard) WHERE a.agent_id = u.agent_id`,
        [sorted.map((a) => a.agentId), sorted.map((a) => a.heardMs)],
      );
    });
  }

  async agents(): Promise<StoredAgent[]> {
    const { rows } = await this.pool.query<Record<string, unknown>>(
      `SELECT a.*, COALESCE(r.n, 0) AS reports FROM agents a LEFT JOIN (SELECT agent_id, COUNT(*) AS n FROM reports GROUP BY agent_id) r USING (agent_id) ORDER BY a.agent_id`,
    );
    return rows.map(storedAgentFromRow);
  }

  async verdictCounts(): Promise<Map<string, Record<string, number>>> {
    const counts = new Map<string, Record<string, number>>();
    const { rows } = await this.pool.query<{ agent_id: string; verdict: string; n: number }>('SELECT agent_id, verdict, COUNT(*) AS n FROM reports GROUP BY agent_id, verdict');
    for (const row of rows) {
      const entry = counts.get(row.agent_id) ?? {};
      entry[row.verdict] = row.n;
      counts.set(row.agent_id, entry);
    }
    return counts;
  }

  async reportCount(agentId?: string): Promise<number> {
    const { rows } = agentId === undefined
      ? await this.pool.query<{ n: number }>('SELECT COUNT(*) AS n FROM reports')
      : await this.pool.query<{ n: number }>('SELECT COUNT(*) AS n FROM reports WHERE agent_id = $1', [agentId]);
    return rows[0]!.n;
  }

  async reports(agentId: string): Promise<Array<{ seq: number; report: Report }>> {
    const { rows } = await this.pool.query<{ seq: number; body: string }>('SELECT seq, body FROM reports WHERE agent_id = $1 ORDER BY stream_id, seq', [agentId]);
    return rows.map((row) => ({ seq: row.seq, report: JSON.parse(row.body) as Report }));
  }

  async reportsSince(agentId: string, sinceMs: number): Promise<Array<{ receivedMs: number; report: Report }>> {
    const { rows } = await this.pool.query<{ received_ms: number; body: string }>(
      'SELECT received_ms, body FROM reports WHERE agent_id = $1 AND received_ms >= $2 ORDER BY received_ms', [agentId, sinceMs],
    );
    return rows.map((row) => ({ receivedMs: row.received_ms, report: JSON.parse(row.body) as Report }));
  }

  async lastSeenMs(agentId: string): Promise<number | null> {
    return (await this.pool.query<{ last_seen_ms: number }>('SELECT last_seen_ms FROM agents WHERE agent_id = $1', [agentId])).rows[0]?.last_seen_ms ?? null;
  }

  async episodesBy(grouping: EpisodeGrouping): Promise<EpisodeGroupRow[]> {
    const key = grouping === 'hour' ? `floor(received_ms / ${HOUR_MS})::bigint` : 'migration_id';
    const { rows } = await this.pool.query<{ key: number | string | null; agent_id: string; episodes: number; disrupted: number }>(
      `SELECT ${key} AS key, agent_id, COUNT(*) AS episodes, COUNT(*) FILTER (WHERE verdict = 'disrupted') AS disrupted FROM reports GROUP BY 1, 2`,
    );
    return rows.map((row) => ({
      key: grouping === 'hour' ? hourStart(row.key as number) : (row.key as string | null), agentId: row.agent_id, episodes: row.episodes, disrupted: row.disrupted,
    }));
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}

/** Locks agents' rows in agent-id order: these agents (null: all) for the rest of the transaction. */
async function lockAgents(client: pg.PoolClient, ids: readonly string[] | null): Promise<void> {
  if (ids === null) await client.query('SELECT 1 FROM agents ORDER BY agent_id FOR UPDATE');
  else await client.query('SELECT 1 FROM agents WHERE agent_id = ANY($1::text[]) ORDER BY agent_id FOR UPDATE', [ids]);
}

/** Deletes the reports `select` names (agent_id, stream_id, seq), takes their bytes off their agents, and counts them. */
async function deleteReturning(client: pg.PoolClient, select: string, parameters: unknown[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM reports r USING (${select}) k WHERE r.agent_id = k.agent_id AND r.stream_id = k.stream_id AND r.seq = k.seq
       RETURNING r.agent_id, octet_length(r.body) AS bytes),
     per_agent AS (SELECT agent_id, SUM(bytes) AS bytes, COUNT(*) AS n FROM gone GROUP BY agent_id),
     updated AS (UPDATE agents a SET stored_bytes = a.stored_bytes - p.bytes FROM per_agent p WHERE a.agent_id = p.agent_id)
     SELECT COALESCE(SUM(n), 0)::bigint AS n FROM per_agent`,
    parameters,
  );
  return rows[0]!.n;
}

/** A PostgreSQL URL as it may be logged: without its password. */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
