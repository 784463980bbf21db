// A collector's store written by the previous schema (3: before the guest column) is opened by this one: migrated in
// place, nothing lost; a store newer than this collector is refused rather than misread.
import t from 'tap';
import Database from 'better-sqlite3';
import path from 'node:path';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

/** Schema 3 exactly as the collector before protocol 3 created it. */
const SCHEMA_3 = `
  CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY, machine_id TEXT NOT NULL, hostname TEXT NOT NULL, macs TEXT NOT NULL, xen_domid INTEGER,
    agent_version TEXT NOT NULL, first_seen_ms REAL NOT NULL, last_seen_ms REAL NOT NULL, stream_id TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0, last_verdict TEXT, spool_dropped INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE reports (
    agent_id TEXT NOT NULL, stream_id TEXT NOT NULL, seq INTEGER NOT NULL, received_ms REAL NOT NULL, episode_id TEXT NOT NULL,
    migration_id TEXT, verdict TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (agent_id, stream_id, seq)
  ) WITHOUT ROWID;
  CREATE INDEX reports_by_time ON reports (received_ms);
  INSERT INTO agents VALUES ('old-1', '', 'old-1.example', '[]', NULL, '0.1.0', 1000, 2000, 'aaaaaaaaaaaaaaaa', 4, 'disrupted', 0, 10);
  INSERT INTO reports VALUES ('old-1', 'aaaaaaaaaaaaaaaa', 4, 2000, 'e-1', NULL, 'disrupted', '{"x":1}');
  PRAGMA user_version = 3;
`;

t.test('schema 3 → 4: agents and reports kept, the guest column added and filled by the next hello', async (t) => {
  const file = path.join(tempDir('flinch-store-'), 'fleet.sqlite');
  const old = new Database(file);
  old.exec(SCHEMA_3);
  old.close();
  const store = new ReportStore(file);
  t.teardown(() => store.close());
  const [agent] = store.agents();
  t.match(agent, { agentId: 'old-1', lastSeq: 4, lastVerdict: 'disrupted', reports: 1 });
  t.notOk(agent && 'guest' in agent, 'no guest until the agent says');
  t.equal(store.lastSeq('old-1'), 4, 'exactly-once state kept: seq 4 will not be stored again');
  const guest = { distro: 'Debian GNU/Linux', release: '12 (bookworm)', kernel: '6.1.0-28-cloud-amd64', arch: 'x64', virtual: true, hypervisor: 'Xen' };
  t.equal(store.registerAgent({ agentId: 'old-1', machineId: '', hostname: 'old-1.example', macs: [], xenDomid: 3, agentVersion: '0.2.0', guest }, 'aaaaaaaaaaaaaaaa', 0, 3000), 4);
  t.same(store.agents()[0]!.guest, guest);
  const reopened = new Database(file, { readonly: true });
  t.equal(reopened.pragma('user_version', { simple: true }), 4);
  reopened.close();
});

t.test('a store of a newer schema is refused, untouched', async (t) => {
  const file = path.join(tempDir('flinch-store-'), 'fleet.sqlite');
  const newer = new Database(file);
  newer.exec('CREATE TABLE later (x INTEGER); PRAGMA user_version = 99;');
  newer.close();
  t.throws(() => new ReportStore(file), /store schema 99 is newer than this collector \(4\)/);
  const reopened = new Database(file, { readonly: true });
  t.equal(reopened.pragma('user_version', { simple: true }), 99);
  reopened.close();
});
