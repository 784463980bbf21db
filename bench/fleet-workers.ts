// The fleet benchmarks' shared parts: CPU and percentiles as they report them, and the load generators: worker processes (fleet-agents-worker.ts) that each simulate a slice of the
// fleet, and how the benchmark asks one of them for something and waits for its answer.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../harness/project-paths.js';

export function forkAgentsWorker(): ChildProcess {
  return fork(path.join(projectRoot(), 'bench', 'fleet-agents-worker.ts'), [], { execArgv: ['--import', './bench/register-ts.mjs'], cwd: projectRoot() });
}

/** Sends `command` and resolves with the worker's first message of type `reply`. */
export function askWorker<T>(worker: ChildProcess, command: object, reply: string): Promise<T> {
  return new Promise<T>((resolve) => {
    const onMessage = (message: { type: string }) => {
      if (message.type === reply) {
        worker.off('message', onMessage);
        resolve(message as T);
      }
    };
    worker.on('message', onMessage);
    worker.send(command);
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat; 0 once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
