// The fleet benchmarks' load generators: worker processes (fleet-agents-worker.ts) that each simulate a slice of the
// fleet, and how the benchmark asks one of them for something and waits for its answer.
import { fork, type ChildProcess } from 'node:child_process';
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
