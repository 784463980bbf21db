import os from 'node:os';
import type { Command } from 'commander';
import type { Probe } from '../probes/probe.js';
import { Observer } from './observer.js';
import { createProbes, DEFAULT_PROBE_SETTINGS, type ProbeSettings } from '../probes/registry.js';
import { FLINCH_VERSION } from '../contract/version.js';
import { createProgram, guarded, positiveInt, printable, EXIT, UserError } from '../contract/command-line.js';
import { REPORTS_FILE } from './runtime.js';
import { formatOutputLine, reportLine, SNAPSHOT_SCHEMA_ID, type OutputLine } from '../contract/output-lines.js';
import { humanLinesPublisher, humanSnapshot, jsonLinesPublisher, statusLine } from './publishers/stdout-publishers.js';
import { DEFAULT_STATE_DIR, StateDir } from './state/state-dir.js';
import type { Report } from '../contract/report-schema.js';
import { AGENT_SETTINGS, parseProbeList, settingOption, type AgentCommand } from './config/agent-settings.js';
import { AGENT_CONFIG_PATH } from '../contract/agent-files.js';
import { runAgentService, runUntilSignalled, type AgentOptions, type RunOptions } from './service.js';

const PROGRAM = 'flinch-agent';

function probesFor(names: string[] | undefined, settings: ProbeSettings): Probe[] {
  try {
    return createProbes(names, settings);
  } catch (error) {
    throw new UserError((error as Error).message, EXIT.usage);
  }
}

/**
 * The options a command runs with: its command line over the --config file over the defaults. The whole file is
 * read and checked before anything starts, so a bad file stops the agent before it has touched the guest.
 */
async function withConfig<T extends AgentOptions>(options: T, command: Command): Promise<T> {
  if (options.config === undefined) return options;
  const { applyAgentConfig } = await import('./config/agent-config.js');
  return applyAgentConfig(options, await readConfig(options.config), (attribute) => command.getOptionValueSource(attribute));
}

/**
 * The config file, read and checked, or a UserError with exit code 78. The YAML parser is loaded here, when a file is
 * given: an agent run without one never carries it (about half a MB of an idle agent, BENCHMARKS.md, issue 19).
 */
async function readConfig(file: string): Promise<Record<string, unknown>> {
  const { ConfigError, loadAgentConfig } = await import('./config/agent-config.js');
  try {
    return loadAgentConfig(file);
  } catch (error) {
    if (error instanceof ConfigError) throw new UserError(error.message, EXIT.config);
    throw error;
  }
}

/** The settings `command` takes (agent-settings.ts), and --config; run adds its own with the same call. */
function addAgentOptions(command: Command, which: AgentCommand): Command {
  command.option('--config <file>', `YAML settings whose keys are these options' long names (packaged: ${AGENT_CONFIG_PATH}); flags win over the file`);
  for (const setting of AGENT_SETTINGS) if (setting.commands.includes(which)) command.addOption(settingOption(setting));
  return command;
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
      const options = await withConfig(given, command);
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
      await runAgentService(await withConfig(given, command), log);
    }),
  );

  program
    .command('check-config')
    .description('read and validate a config file, print the settings it gives, and exit (0 valid, 78 invalid)')
    .option('--config <file>', 'the file to check', AGENT_CONFIG_PATH)
    .action(
      guarded(PROGRAM, verbose, async (options: { config: string }) => {
        process.stdout.write(`${JSON.stringify(await readConfig(options.config), null, 2)}\n`);
      }),
    );
  return program;
}
