import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Observation } from '../contract/observation.js';
import type { Probe } from '../probes/probe.js';
import { Observer } from './observer.js';
import { createProbes, DEFAULT_PROBE_SETTINGS, PROBE_SETTINGS, type ProbeSettings } from '../probes/registry.js';
import { HostOffsetTracker } from '../probes/clock/host-offset.js';
import { stampNow } from '../probes/clock/read-clocks.js';
import { CollectorClient, DEFAULT_LIVENESS_TIMEOUT_MS } from './transport/collector-client.js';
import { Spool } from './transport/spool.js';
import { currentIdentity } from './transport/agent-identity.js';
import { collectorFor } from './transport/shard.js';
import { readSecretFile } from '../contract/frame-signing.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { startUdpEchoResponder } from './blackout/udp-echo-responder.js';
import { FLINCH_VERSION } from '../contract/version.js';
import { createProgram, guarded, positiveInt, printable, EXIT, UserError } from '../contract/command-line.js';
import { AgentRuntime, REPORTS_FILE } from './runtime.js';
import type { Publisher } from './publishers/publisher.js';
import { formatOutputLine, reportLine, SNAPSHOT_SCHEMA_ID, type OutputLine } from '../contract/output-lines.js';
import { humanLinesPublisher, humanSnapshot, jsonLinesPublisher, reportSummary, statusLine } from './publishers/stdout-publishers.js';
import { DEFAULT_EPISODE_OPTIONS } from './episodes/episode-engine.js';
import { DEFAULT_VERDICT_THRESHOLDS } from './episodes/verdict.js';
import { DEFAULT_SAFETY_NET_OPTIONS, type RemediationMode } from './remediation/safety-net.js';
import { DEFAULT_STATE_DIR, StateDir } from './state/state-dir.js';
import type { Report } from '../contract/report-schema.js';
import { applyAgentConfig, ConfigError, DEFAULT_CONFIG_PATH, loadAgentConfig, optionAttribute } from './config/agent-config.js';
import { AGENT_SETTINGS, parseProbeList, settingOption, type AgentCommand } from './config/agent-settings.js';
import { StateDirError } from './state/state-dir.js';


const PROGRAM = 'flinch-agent';

function probesFor(names: string[] | undefined, settings: ProbeSettings): Probe[] {
  try {
    return createProbes(names, settings);
  } catch (error) {
    throw new UserError((error as Error).message, EXIT.usage);
  }
}

interface AgentOptions {
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
async function runUntilSignalled(options: AgentOptions, agentId: string, publishers: readonly Publisher[], log: (l: string) => void, onStop?: () => void): Promise<AgentRuntime> {
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

/**
 * The options a command runs with: its command line over the --config file over the defaults. The whole file is
 * read and checked before anything starts, so a bad file stops the agent before it has touched the guest.
 */
function withConfig<T extends AgentOptions>(options: T, command: Command): T {
  if (options.config === undefined) return options;
  try {
    return applyAgentConfig(options, loadAgentConfig(options.config), (attribute) => command.getOptionValueSource(attribute));
  } catch (error) {
    if (error instanceof ConfigError) throw new UserError(error.message, EXIT.config);
    throw error;
  }
}

/** The settings `command` takes (agent-settings.ts), and --config; run adds its own with the same call. */
function addAgentOptions(command: Command, which: AgentCommand): Command {
  command.option('--config <file>', `YAML settings whose keys are these options' long names (packaged: ${DEFAULT_CONFIG_PATH}); flags win over the file`);
  for (const setting of AGENT_SETTINGS) if (setting.commands.includes(which)) command.addOption(settingOption(setting));
  return command;
}

interface RunOptions extends AgentOptions {
  collector?: string[];
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

async function runAgentService(options: RunOptions, log: (line: string) => void): Promise<void> {
  const metrics = options.metrics === undefined ? null : new AgentMetrics();
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
  const url = collectorFor(options.agentId, collectors);
  const spool = new Spool({ dir: path.join(options.stateDir, 'spool'), maxBytes: options.spoolMaxBytes, segmentBytes: Math.min(1024 * 1024, Math.max(4096, Math.floor(options.spoolMaxBytes / 8))), log });
  const hostOffset = new HostOffsetTracker();
  let runtime: AgentRuntime | null = null;
  let xenDomid: number | null = null;
  let feed: (o: Observation) => void = () => undefined;
  const client: CollectorClient = new CollectorClient({
    url,
    identity: () => currentIdentity(options.agentId, xenDomid),
    key,
    ca,
    spool,
    minBackoffMs: 250,
    maxBackoffMs: 10_000,
    livenessTimeoutMs: DEFAULT_LIVENESS_TIMEOUT_MS,
    log,
    onTimeExchange: (exchange) => {
      const observation = hostOffset.add(exchange);
      if (observation) feed(observation);
    },
    // A signed announcement is migration evidence and opens a repair window, so it is honoured only when asked for.
    onAnnounce: options.acceptAnnounce ? (phase, migrationId) => runtime?.announce(phase, migrationId) : undefined,
    onConnectionLost: (detail) => feed({ kind: 'connection', event: 'reset', detail: `collector connection lost: ${detail}`, at: stampNow() }),
    onConnectionReplaced: (detail) => feed({ kind: 'connection', event: 'closed', detail: `collector connection replaced: ${detail}`, at: stampNow() }),
    onAck: () => metrics?.spool(spool.unacked.length, spool.dropped),
  });
  runtime = await runUntilSignalled(
    options,
    options.agentId,
    [
      ...(metrics ? [metrics] : []),
      {
        name: 'collector',
        observation: (o) => {
          // The next hello names the domain the guest is in now.
          if (o.kind === 'xen' && o.change === 'domid' && o.value !== null && /^\d+$/.test(o.value)) xenDomid = Number(o.value);
          client.send(o);
        },
        report: (r) => client.sendReport(r),
      },
    ],
    log,
    () => client.close(),
  );
  // Observations the transport makes itself (host offset, connection loss) go through the same pipeline.
  feed = (o) => runtime?.ingest(o);
  // Connect only once the agent is whole (probes running, baseline taken): the hello means "ready", and what the
  // probes saw meanwhile waits in the spool.
  client.start();
  log(`streaming to ${url}${collectors.length > 1 ? ` (shard of ${collectors.length} collectors)` : ''} as ${options.agentId}${key === null ? ', unsigned' : ''}`);
}

export function buildAgentProgram(): Command {
  const { program, verbose, log } = createProgram(PROGRAM, 'flinch guest agent: sees what a live migration did to this guest, and puts back what it lost');

  addAgentOptions(
    program
      .command('watch')
      .description('print observations and episode reports as they happen, a line each; changes nothing in the guest')
      .option('--json', 'as JSON lines, each {"type": "observation"|"report", "schema": ..., <type>: ...}'),
    'watch',
  ).action(
    guarded(PROGRAM, verbose, async (given: AgentOptions & { json?: boolean }, command: Command) => {
      const options = withConfig(given, command);
      if (options.remediate === 'on') throw new UserError('watch changes nothing in the guest: use `run --remediate on` for the safety net', EXIT.usage);
      await runUntilSignalled(options, os.hostname(), [given.json ? jsonLinesPublisher() : humanLinesPublisher()], log);
    }),
  );

  program
    .command('snapshot')
    .description("print every probe's current state: links, addresses, routes, firewalls with hashes, clocks, kernel log, Xen")
    .option('--json', 'as one JSON line {"type": "snapshot", "schema": "flinch.snapshot/v1", "probes": {...}}')
    .option('--probes <list>', 'comma-separated probes to read (default: all)', parseProbeList)
    .action(
      guarded(PROGRAM, verbose, async (options: { probes?: string[]; json?: boolean }) => {
        const probes = probesFor(options.probes, DEFAULT_PROBE_SETTINGS);
        const result = await Observer.snapshot(probes);
        const snapshot: OutputLine = { type: 'snapshot', schema: SNAPSHOT_SCHEMA_ID, agentVersion: FLINCH_VERSION, hostname: os.hostname(), probes: result };
        process.stdout.write(options.json ? formatOutputLine(snapshot) : humanSnapshot(snapshot));
        process.exit(EXIT.ok);
      }),
    );

  program
    .command('status')
    .description('summarise the last episodes from the state directory')
    .option('--json', 'the reports as JSON lines, each {"type": "report", "schema": "flinch.report/v1", "report": ...}')
    .option('--last <n>', 'how many episodes', positiveInt, 10)
    .option('--state-dir <dir>', 'where reports.jsonl is', DEFAULT_STATE_DIR)
    .action(
      guarded(PROGRAM, verbose, async (options: { json?: boolean; last: number; stateDir: string }) => {
        const { values, skipped } = new StateDir(options.stateDir, log).readLines<Report>(REPORTS_FILE, options.last);
        if (skipped > 0) log(`${skipped} unreadable line(s) in ${REPORTS_FILE} skipped`);
        if (options.json) {
          process.stdout.write(values.map((r) => formatOutputLine(reportLine(r))).join(''));
          return;
        }
        if (values.length === 0) {
          process.stdout.write(`no episodes recorded in ${options.stateDir}\n`);
          return;
        }
        for (const r of values) process.stdout.write(`${printable(statusLine(r))}\n`);
      }),
    );

  addAgentOptions(
    program
      .command('run')
      .description('the service: watch, judge and repair; stream to a collector if one is set, reconnecting and queueing while it is unreachable'),
    'run',
  ).action(
    guarded(PROGRAM, verbose, async (given: RunOptions, command: Command) => {
      await runAgentService(withConfig(given, command), log);
    }),
  );

  program
    .command('check-config')
    .description('read and validate a config file, print the settings it gives, and exit (0 valid, 78 invalid)')
    .option('--config <file>', 'the file to check', DEFAULT_CONFIG_PATH)
    .action(
      guarded(PROGRAM, verbose, async (options: { config: string }) => {
        try {
          process.stdout.write(`${JSON.stringify(loadAgentConfig(options.config), null, 2)}\n`);
        } catch (error) {
          if (error instanceof ConfigError) throw new UserError(error.message, EXIT.config);
          throw error;
        }
      }),
    );
  return program;
}
