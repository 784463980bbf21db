import os from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import type { Observation } from '../probes/observation.js';
import { createProbes } from '../probes/registry.js';
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

/** Runs the probes until SIGINT/SIGTERM, handing every observation to `sink`. */
async function observeUntilSignalled(probeNames: string[] | undefined, sink: (o: Observation) => void, onStop?: () => void): Promise<void> {
  let probes;
  try {
    probes = createProbes(probeNames);
  } catch (error) {
    throw new UserError((error as Error).message, 2);
  }
  const observer = new Observer(probes, sink);
  await observer.start();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await observer.stop();
  onStop?.();
}

export function buildAgentProgram(): Command {
  const { program, verbose, log } = createProgram(PROGRAM, 'flinch guest agent: sees what a live migration did to this guest');

  program
    .command('watch')
    .description('print observations as they happen')
    .option('--json', 'one JSON object per line (the only format for now)', true)
    .option('--probes <list>', 'comma-separated probes to run (default: all)', parseProbeList)
    .action(
      guarded(PROGRAM, verbose, async (options: { probes?: string[] }) => {
        await observeUntilSignalled(options.probes, (observation) => {
          process.stdout.write(`${JSON.stringify(observation)}\n`);
        });
      }),
    );

  program
    .command('run')
    .description('stream observations to a collector, reconnecting and queueing while it is unreachable')
    .requiredOption('--collector <url>', 'collector WebSocket URL, e.g. ws://10.0.3.1:7431', parseCollectorUrl)
    .option('--agent-id <id>', 'stable identity of this agent', os.hostname())
    .option('--probes <list>', 'comma-separated probes to run (default: all)', parseProbeList)
    .option('--queue <n>', 'observations kept while disconnected', (v) => positiveInt(v), DEFAULT_QUEUE_LIMIT)
    .action(
      guarded(PROGRAM, verbose, async (options: { collector: string; agentId: string; probes?: string[]; queue: number }) => {
        const client = new CollectorClient({
          url: options.collector,
          hello: { agentId: options.agentId, hostname: os.hostname(), agentVersion: FLINCH_VERSION },
          maxQueued: options.queue,
          minBackoffMs: 250,
          maxBackoffMs: 10_000,
          log,
        });
        client.start();
        log(`streaming to ${options.collector} as ${options.agentId}`);
        await observeUntilSignalled(options.probes, (observation) => client.send(observation), () => client.close());
      }),
    );
  return program;
}

