/*
 * The agent as a running service: the runtime started with its publishers, the collector connection wired in, and
 * everything stopped on SIGINT/SIGTERM. The command line (program.ts) only parses and picks which of these to run.
 */
import { collectStartupGarbageLater } from './startup-garbage.js';
import { readGuestSystem } from './transport/guest-system.js';
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { DEFAULT_PROBE_SETTINGS, PROBE_SETTINGS } from '../probes/registry.js';
import { collectorOrder } from './transport/shard.js';
import { readSecretFile } from '../contract/frame-signing.js';
import type { AgentMetrics } from './metrics/agent-metrics.js';
import { startUdpEchoResponder } from './blackout/udp-echo-responder.js';
import { FLINCH_VERSION } from '../contract/version.js';
import { EXIT, UserError } from '../contract/command-line.js';
import { AgentRuntime, REPORTS_FILE } from './runtime.js';
import type { Publisher } from './publishers/publisher.js';
import { reportSummary } from './publishers/stdout-publishers.js';
import { DEFAULT_EPISODE_OPTIONS } from './episodes/episode-engine.js';
import { DEFAULT_VERDICT_THRESHOLDS } from './episodes/verdict.js';
import { DEFAULT_SAFETY_NET_OPTIONS, type RemediationMode } from './remediation/safety-net.js';
import { optionAttribute } from './config/agent-settings.js';
import { StateDirError } from './state/state-dir.js';

export interface AgentOptions {
  config?: string;
  udpEcho?: number;
  probes?: string[];
  canaries: boolean;
  remediate: RemediationMode;
  stateDir: string;
  settle: number;
  timingNoise: number;
  adoptAfter: number;
  conflictWindow: number;
  repairWindow: number;
  clockHealMs: number;
  maxActions: number;
}

/** Runs the whole agent until SIGINT/SIGTERM, then exits. */
export async function runUntilSignalled(options: AgentOptions, agentId: string, publishers: readonly Publisher[], log: (l: string) => void, onStop?: () => void): Promise<AgentRuntime> {
  try {
    return await startRuntime(options, agentId, publishers, log, onStop);
  } catch (error) {
    // Nothing that was started may keep a failed agent alive (the collector connection, a probe's socket).
    onStop?.();
    if (error instanceof StateDirError) throw new UserError(error.message, EXIT.stateDir);
    throw error;
  }
}

async function startRuntime(options: AgentOptions, agentId: string, publishers: readonly Publisher[], log: (l: string) => void, onStop?: () => void): Promise<AgentRuntime> {
  const runtime = new AgentRuntime(
    {
      agentId,
      hostname: os.hostname(),
      agentVersion: FLINCH_VERSION,
      probes: options.probes,
      probeSettings: {
        values: Object.fromEntries(PROBE_SETTINGS.map((setting) => [setting.key, (options as unknown as Record<string, unknown>)[optionAttribute(setting.key)]])),
        clock: { ...DEFAULT_PROBE_SETTINGS.clock, pauseThresholdMs: Math.max(DEFAULT_PROBE_SETTINGS.clock.pauseThresholdMs, options.timingNoise) },
      },
      episodes: {
        ...DEFAULT_EPISODE_OPTIONS,
        settleMs: options.settle,
        pauseNoise: { ...DEFAULT_EPISODE_OPTIONS.pauseNoise, overrideMs: options.timingNoise },
        offsetNoise: { ...DEFAULT_EPISODE_OPTIONS.offsetNoise, overrideMs: options.timingNoise },
      },
      verdict: DEFAULT_VERDICT_THRESHOLDS,
      safetyNet: {
        ...DEFAULT_SAFETY_NET_OPTIONS, mode: options.remediate, adoptAfterMs: options.adoptAfter, conflictWindowMs: options.conflictWindow,
        repairWindowMs: options.repairWindow, maxActionsPerMinute: options.maxActions, canaries: options.canaries, clockHealMs: options.clockHealMs,
      },
      stateDir: options.stateDir,
      collectorEvidence: (options as Partial<RunOptions>).acceptAnnounce === true,
    },
    publishers,
    log,
  );
  try {
    await runtime.start();
  } catch (error) {
    await runtime.stop().catch(() => undefined);
    throw error;
  }
  collectStartupGarbageLater();
  const stopEcho = options.udpEcho === undefined ? null : await startUdpEchoResponder(options.udpEcho, log).catch(async (error: Error) => {
    await runtime.stop().catch(() => undefined);
    throw new UserError(`--udp-echo ${options.udpEcho}: ${error.message}`, EXIT.usage);
  });
  void new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  }).then(async () => {
    await runtime.stop();
    await stopEcho?.();
    onStop?.();
    // Nothing must hold the exit: reports are on disk, and probes have closed their devices.
    process.exit(process.exitCode ?? 0);
  });
  return runtime;
}


export interface RunOptions extends AgentOptions {
  collector?: string[];
  collectorFailover?: boolean;
  agentId: string;
  tokenFile?: string;
  caFile?: string;
  spoolMaxBytes: number;
  metrics?: string;
  acceptAnnounce?: boolean;
}

function readOptionalFile(file: string | undefined, what: string): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file);
  } catch (error) {
    throw new UserError(`${file}: cannot read the ${what}: ${(error as Error).message}`, EXIT.config);
  }
}

export async function runAgentService(options: RunOptions, log: (line: string) => void): Promise<void> {
  // prom-client and ws (with the collector's client) are loaded only when asked for: an agent without them idles
  // with about 2 MB less heap (BENCHMARKS.md, issue 19).
  const metrics: AgentMetrics | null = options.metrics === undefined ? null : new (await import('./metrics/agent-metrics.js')).AgentMetrics();
  if (metrics && options.metrics) {
    const { address } = await metrics.listen(options.metrics).catch((error: Error) => {
      throw new UserError(`--metrics ${options.metrics}: ${error.message}`, EXIT.config);
    });
    log(`metrics on http://${address.address}:${address.port}/metrics`);
  }
  const collectors = options.collector ?? [];
  if (collectors.length === 0) {
    const summary: Publisher = { name: 'log', report: (r) => log(reportSummary(r)) };
    await runUntilSignalled(options, options.agentId, [...(metrics ? [metrics] : []), summary], log);
    log(`running without a collector; reports go to ${path.join(options.stateDir, REPORTS_FILE)}`);
    return;
  }
  let key: string | null = null;
  if (options.tokenFile !== undefined) {
    try {
      key = readSecretFile(options.tokenFile, 'agent token');
    } catch (error) {
      throw new UserError((error as Error).message, EXIT.config);
    }
  }
  if (options.acceptAnnounce && key === null) {
    throw new UserError('--accept-announce needs --token-file: only a signed announcement may count as migration evidence', EXIT.usage);
  }
  const ca = readOptionalFile(options.caFile, 'CA bundle');
  // Sharded, an agent keeps to its collector (its seqs live in that one's store); collectors that share a store are
  // interchangeable, and the same order spreads a dead one's agents over the others.
  const order = collectorOrder(options.agentId, collectors);
  const urls = options.collectorFailover === true ? order : order.slice(0, 1);
  const { CollectorPublisher } = await import('./publishers/collector-publisher.js');
  const collector = new CollectorPublisher({
    urls, agentId: options.agentId, key, ca, stateDir: options.stateDir, spoolMaxBytes: options.spoolMaxBytes,
    acceptAnnounce: options.acceptAnnounce === true, metrics, log,
  });
  // Read while the probes start: the hello carries it from the first connection on.
  const guest = readGuestSystem();
  const runtime = await runUntilSignalled(options, options.agentId, [...(metrics ? [metrics] : []), collector], log, () => collector.close());
  collector.start(runtime, await guest);
  const how = urls.length > 1 ? ` (then ${urls.slice(1).join(', ')} if it is gone)` : collectors.length > 1 ? ` (shard of ${collectors.length} collectors)` : '';
  log(`streaming to ${urls[0]}${how} as ${options.agentId}${key === null ? ', unsigned' : ''}`);
}
