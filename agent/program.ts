import os from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import type { Observation } from '../probes/observation.js';
import { ProbeUnavailableError, type Probe } from '../probes/probe.js';
import { createProbes, DEFAULT_PROBE_SETTINGS, type ProbeSettings } from '../probes/registry.js';
import { HostOffsetTracker } from '../probes/clock/host-offset.js';
import { Observer } from './observer.js';
import { CollectorClient, DEFAULT_QUEUE_LIMIT } from './transport/collector-client.js';
import { FLINCH_VERSION } from './version.js';
import { createProgram, guarded, positiveInt, UserError } from './cli-support.js';

const PROGRAM = 'flinch-agent';

function parseCollectorUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('expected a URL such as ws://10.0.3.1:7431');
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new InvalidArgumentError('the collector URL must start with ws:// or wss://');
  return url.toString();
}

function parseProbeList(value: string): string[] {
  return value.split(',').map((name) => name.trim()).filter(Boolean);
}

function probesFor(names: string[] | undefined, settings: ProbeSettings): Probe[] {
  try {
    return createProbes(names, settings);
  } catch (error) {
    throw new UserError((error as Error).message, 2);
  }
}

interface ObserveOptions {
  probes?: string[];
  canaries: boolean;
  legacyPoll: number;
}

function settingsFrom(options: ObserveOptions): ProbeSettings {
  return { ...DEFAULT_PROBE_SETTINGS, installCanaries: options.canaries, legacyPollMs: options.legacyPoll };
}

/** Runs the probes until SIGINT/SIGTERM, handing every observation to `sink`, then exits. */
async function observeUntilSignalled(options: ObserveOptions, sink: (o: Observation) => void, onStop?: () => void): Promise<void> {
  const observer = new Observer(probesFor(options.probes, settingsFrom(options)), sink);
  await observer.start();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await observer.stop();
  onStop?.();
  // Blocking reads of /dev/kmsg and xenbus hold thread-pool requests open until their next record; do not wait.
  process.exit(process.exitCode ?? 0);
}

function addObserveOptions(command: Command): Command {
  return command
    .option('--probes <list>', 'comma-separated probes to run (default: all)', parseProbeList)
    .option('--no-canaries', 'do not install the canary table/chains the firewall probes use to prove a wholesale flush')
    .option('--legacy-poll <ms>', 'how often iptables-legacy, which has no change events, is read', positiveInt, DEFAULT_PROBE_SETTINGS.legacyPollMs);
}

export function buildAgentProgram(): Command {
  const { program, verbose, log } = createProgram(PROGRAM, 'flinch guest agent: sees what a live migration did to this guest');

  addObserveOptions(
    program
      .command('watch')
      .description('print observations as they happen')
      .option('--json', 'one JSON object per line (the only format for now)', true),
  ).action(
    guarded(PROGRAM, verbose, async (options: ObserveOptions) => {
      await observeUntilSignalled(options, (observation) => process.stdout.write(`${JSON.stringify(observation)}\n`));
    }),
  );

  program
    .command('snapshot')
    .description("print every probe's current state: links, addresses, routes, firewalls with hashes, clocks, kernel log, Xen")
    .option('--json', 'as one JSON document (the only format for now)', true)
    .option('--probes <list>', 'comma-separated probes to read (default: all)', parseProbeList)
    .action(
      guarded(PROGRAM, verbose, async (options: { probes?: string[] }) => {
        // A one-shot read changes nothing: no canaries.
        const probes = probesFor(options.probes, { ...DEFAULT_PROBE_SETTINGS, installCanaries: false });
        const result: Record<string, unknown> = {};
        for (const probe of probes) {
          try {
            await probe.start(() => undefined);
            result[probe.name] = await probe.snapshot();
          } catch (error) {
            result[probe.name] = error instanceof ProbeUnavailableError
              ? { unavailable: error.reason }
              : { failed: (error as Error).message };
          } finally {
            await probe.stop();
          }
        }
        process.stdout.write(`${JSON.stringify({ agentVersion: FLINCH_VERSION, hostname: os.hostname(), probes: result }, null, 2)}\n`);
        process.exit(0);
      }),
    );

  addObserveOptions(
    program
      .command('run')
      .description('stream observations to a collector, reconnecting and queueing while it is unreachable')
      .requiredOption('--collector <url>', 'collector WebSocket URL, e.g. ws://10.0.3.1:7431', parseCollectorUrl)
      .option('--agent-id <id>', 'stable identity of this agent', os.hostname())
      .option('--queue <n>', 'observations kept while disconnected', positiveInt, DEFAULT_QUEUE_LIMIT),
  ).action(
    guarded(PROGRAM, verbose, async (options: ObserveOptions & { collector: string; agentId: string; queue: number }) => {
      const hostOffset = new HostOffsetTracker();
      const client: CollectorClient = new CollectorClient({
        url: options.collector,
        hello: { agentId: options.agentId, hostname: os.hostname(), agentVersion: FLINCH_VERSION },
        maxQueued: options.queue,
        minBackoffMs: 250,
        maxBackoffMs: 10_000,
        log,
        onTimeExchange: (exchange) => {
          const observation = hostOffset.add(exchange);
          if (observation) client.send(observation);
        },
      });
      client.start();
      log(`streaming to ${options.collector} as ${options.agentId}`);
      await observeUntilSignalled(options, (observation) => client.send(observation), () => client.close());
    }),
  );
  return program;
}
