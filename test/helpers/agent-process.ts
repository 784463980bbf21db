import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { observationError, type Observation } from '../../contract/observation.js';
import type { OutputLine } from '../../contract/output-lines.js';
import type { Report } from '../../contract/report-schema.js';
import { projectRoot } from '../../harness/project-paths.js';

/** The agent exactly as the guest runs it: the esbuild bundle made by `npm run build`. */
export function agentBundle(): string {
  const bundle = path.join(projectRoot(), 'build', 'agent', 'flinch-agent.cjs');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build (npm test does it)`);
  return bundle;
}

export interface AgentProcess {
  child: ChildProcess;
  observations: Observation[];
  /** The episode reports `watch --json` printed. */
  printedReports: Report[];
  stderr: string[];
  /**
   * Resolves with the first observation at or after index `from` (seen or still to come) that matches, or rejects
   * after timeoutMs. Pass `observations.length` taken before an action to match only what the action caused.
   */
  waitFor(match: (o: Observation) => boolean, from?: number, timeoutMs?: number): Promise<Observation>;
}

/** Starts `flinch-agent <args>` (inside `netns` when given) and collects its JSON lines. Killed in teardown. */
export function startAgent(t: Test, args: string[], netns?: string): AgentProcess {
  // Every agent under test keeps its baseline and reports in a folder of its own, never in /var/lib/flinch.
  if ((args[0] === 'watch' || args[0] === 'run') && !args.includes('--state-dir')) {
    args = [...args, '--state-dir', mkdtempSync(path.join(os.tmpdir(), 'flinch-state-'))];
  }
  const command = netns ? 'ip' : process.execPath;
  const argv = netns ? ['netns', 'exec', netns, process.execPath, agentBundle(), ...args] : [agentBundle(), ...args];
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const observations: Observation[] = [];
  const reports: Report[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (!line.trim()) continue;
      const value = JSON.parse(line) as OutputLine;
      // Every test that runs real probes is also a test of the contract: what they print must be what the collector
      // accepts (reports are checked by the agent itself before they are printed).
      if (value.type === 'observation') {
        const error = observationError(value.observation);
        if (error) t.fail(`the agent printed an observation the contract refuses: ${error}`, { line: line.slice(0, 500) });
        observations.push(value.observation);
      } else if (value.type === 'report') {
        reports.push(value.report);
      } else {
        t.fail(`a --json line of no known type: ${line.slice(0, 200)}`);
      }
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return {
    child,
    observations,
    printedReports: reports,
    stderr,
    waitFor(match, from = 0, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = observations.slice(from).find(match);
          if (!found) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching observation within ${timeoutMs} ms; stderr: ${stderr.join('').slice(0, 300)}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
  };
}
