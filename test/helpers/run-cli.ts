import { spawn } from 'node:child_process';
import path from 'node:path';
import { diesWithThisProcess } from '../../system/child-lifetime.js';
import { projectRoot } from '../../harness/project-paths.js';

export interface CliResult {
  /** flinch's own process id (the wrappers before it exec): what it names its namespaces and cgroups after. */
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The built executables, as a user runs them (npm test builds them first). */
export const FLINCH = path.join(projectRoot(), 'dist', 'harness', 'cli.js');
export const FLINCH_AGENT = path.join(projectRoot(), 'dist', 'agent', 'cli.js');

export function runCli(argv: string[], options: { timeoutMs?: number; prefix?: string[]; onSpawn?: (pid: number) => void } = {}): Promise<CliResult> {
  // tap's processinfo re-adds its NODE_OPTIONS hook to every child it sees spawned; `env -u` drops it past that point.
  // Bound to this test's process: a test killed at its time limit takes its lab (and the lab's QEMUs) with it. By
  // SIGTERM, which flinch passes on to a lab's inner process, so that the lab's namespace is removed too.
  const [command, args] = diesWithThisProcess('env', ['-u', 'NODE_OPTIONS', ...(options.prefix ?? []), process.execPath, ...argv], 'TERM');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnvironment() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', reject);
    if (child.pid) options.onSpawn?.(child.pid);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, stdout, stderr });
    });
  });
}

/** The environment a user would have: without tap's NODE_OPTIONS, which hooks child processes into its own bookkeeping. */
export function cleanEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const key of Object.keys(env)) if (key.startsWith('TAP') || key.startsWith('_TAPJS')) delete env[key];
  return env;
}

/**
 * The longest the guest's agent said it was kept from running ("woke N ms late") in a migration's report: a TCG
 * guest's agent starved for seconds after a migration on a 2-core host answers its time exchanges too slowly for the
 * clock lag to be read from them. Tests that need that lag accept its absence only after such a stall.
 */
export function agentStallMs(reasons: readonly string[]): number {
  return Math.max(0, ...reasons.map((r) => Number(/woke ([\d.]+) ms late/.exec(r)?.[1] ?? 0)));
}

/**
 * How far a migration's guest clock lag may stray from its true pause (QEMU's STOP on the source to RESUME on the
 * destination) and still be that pause: three times the time probes' stated uncertainty, 30 ms at least, which a TCG
 * guest's worst reading stays inside and a wrong baseline (a heal's 5 s) does not. How closely they agree is a
 * benchmark's question (BENCHMARKS.md: median 0.6 ms, worst 10 ms in 20).
 */
export function lagToleranceMs(lagUncertaintyMs: number): number {
  return Math.max(3 * lagUncertaintyMs, 30);
}
