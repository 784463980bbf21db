// The collector's WAL checkpoints, on a thread of their own: its own SQLite connection copies the write-ahead log back
// into the database (PASSIVE: never waits for, nor blocks, the writer), so that the event loop that serves the agents
// never stalls on it. In one thread with the writer, checkpoints took half of what the store could commit.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, intervalMs } = workerData as { file: string; intervalMs: number };
const db = new Database(file);
db.pragma('busy_timeout = 1000');
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort?.postMessage({ error: (error as Error).message });
  }
}, intervalMs);
parentPort?.on('message', (message: { stop?: true }) => {
  if (!message.stop) return;
  clearInterval(timer);
  db.close();
  parentPort?.postMessage({ stopped: true });
});
