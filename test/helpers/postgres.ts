// A real PostgreSQL server for a test: Debian's own binaries, a temporary cluster owned by the unprivileged `postgres`
// user, listening on loopback at a free port, stopped (by its PID) and deleted in teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from './collector-fixtures.js';

export interface TestPostgres {
  port: number;
  /** A URL for a new, empty database of this server. */
  database(name: string): Promise<string>;
  /** Stops the server (by its PID) and deletes its cluster. */
  stop(): Promise<void>;
}

/** The newest PostgreSQL installed (postgresql-NN), or null: the tests that need one say so and skip. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(root, versions[0]!, 'bin') : null;
}

function asPostgresUser(bin: string, args: string[]): string[] {
  // setpriv execs: the PID we hold is the server's own, so teardown ends exactly what it started.
  return ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', '--', bin, ...args];
}

export async function startPostgres(options: { fsync?: boolean } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server installed (postgresql-15): run packaging/host-setup.sh');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-pg-'));
  chownSync(dir, Number(spawnSync('id', ['-u', 'postgres']).stdout.toString()), Number(spawnSync('id', ['-g', 'postgres']).stdout.toString()));
  const data = path.join(dir, 'data');
  const [command, ...args] = asPostgresUser(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'flinch', '-E', 'UTF8', '--no-sync', '--locale=C']);
  const init = spawnSync(command!, args, { encoding: 'utf8', timeout: 60_000 });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  const port = await freePort();
  let server: ChildProcess | null = null;
  let log = '';
  const start = async () => {
    const [cmd, ...rest] = asPostgresUser(path.join(bin, 'postgres'), [
      '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200',
      ...(options.fsync === false ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off'] : []),
    ]);
    server = spawn(cmd!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
    server.stderr!.on('data', (d) => (log = (log + d).slice(-8000)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new pg.Client({ connectionString: `postgres://flinch@127.0.0.1:${port}/postgres`, connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline || server.exitCode !== null) throw new Error(`PostgreSQL did not start: ${log}`);
        await sleep(100);
      }
    }
  };
  const kill = async (signal: NodeJS.Signals) => {
    const running = server;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(signal);
    await exited;
  };
  await start();
  return {
    port,
    async database(name: string) {
      const admin = new pg.Client({ connectionString: `postgres://flinch@127.0.0.1:${port}/postgres` });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await admin.end();
      }
      return `postgres://flinch@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      // Fast shutdown; its children (background writer and the rest) go with it.
      await kill('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
