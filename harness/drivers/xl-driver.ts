import { setTimeout as sleep } from 'node:timers/promises';
import { hostNowMs } from '../host-clock.js';
import { GUEST_CONSOLE_FAULTS, type FaultName, type FaultRecord, type MigrateOptions, type MigrationDriver, type MigrationTiming } from './migration-driver.js';
import { MigrationFailedError } from './qmp-driver.js';
import { runTimed, type TimedResult } from './timed-command.js';

/** A shell in dom0 that is not a command to spawn (the nested Xen lab's serial console): output is stdout and stderr. */
export interface Dom0Shell {
  run(commandLine: string, timeoutMs: number): Promise<{ exitCode: number; output: string }>;
}

export const XL_METHODS = ['save-restore', 'migrate'] as const;
export type XlMethod = (typeof XL_METHODS)[number];

export interface XlDriverOptions {
  /** The domain's name, as `xl list` shows it. */
  domain: string;
  /** `save-restore`: `xl save` then `xl restore`; `migrate`: `xl migrate` to `target`. A migration's `method` overrides it. */
  mode: XlMethod;
  xl: string;
  /**
   * How to reach the Xen host's dom0: null runs xl here; otherwise a command that takes one shell command line as its
   * last argument, e.g. ['ssh', '-o', 'BatchMode=yes', 'root@xenhost'].
   */
  remoteShell: string[] | null;
  /** Instead of a command: a shell object (the nested Xen lab's dom0 console). */
  dom0Shell?: Dom0Shell;
  /**
   * In dom0, a program that runs one command line in the domU's lab console (`PROGRAM DOMAIN TIMEOUT_S COMMAND`),
   * for the guest-side faults; null when the domU has none.
   */
  domuConsoleRunner?: string | null;
  /** `xl migrate`'s host argument. */
  target: string;
  /** `xl migrate -s`: the transport command xl runs as `<it> <host> xl migrate-receive` (localhost: a pass-through). */
  migrateTransport: string | null;
  /** Where `xl save` writes the domain on the Xen host. */
  saveFile: string;
  /** The vif to plug back after a replug, as `xl network-attach` takes it (e.g. `mac=00:16:3e:00:00:01,bridge=xenbr0`). */
  vifSpec: string | null;
  timeoutMs: number;
}

/** Quotes one word for a POSIX shell: a remote shell (ssh) runs a command line, not an argument vector. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Xen's toolstack as a migration driver: `xl save`/`xl restore` or `xl migrate`, run in dom0 directly or through a
 * remote shell. xl reports no downtime of its own; the driver times its commands. For save/restore the guest is not
 * running from the start of the save to the end of the restore, which is given as the downtime (an upper bound).
 */
export class XlDriver implements MigrationDriver {
  readonly name = 'xl';
  readonly faults: readonly FaultName[];
  readonly commands: string[][] = [];
  /** The domain's id as of the last prepare or migration: each restore and migration gives it a new one. */
  domid: string | null = null;

  constructor(private readonly options: XlDriverOptions) {
    this.faults = [
      ...(options.vifSpec ? (['nic-replug'] as const) : []),
      ...(options.domuConsoleRunner ? (['guest-firewall-flush', 'guest-clock-step'] as const) : []),
    ];
  }

  async prepare(): Promise<void> {
    await this.xl(['list', this.options.domain]);
    await this.readDomid();
  }

  private async readDomid(): Promise<void> {
    this.domid = (await this.xl(['domid', this.options.domain])).stdout.trim().split('\n').slice(-1)[0] ?? null;
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrationTiming> {
    if (options.postcopy || options.downtimeLimitMs !== undefined || options.maxBandwidthBytesPerSecond !== undefined || options.pausedForMs !== undefined) {
      throw new MigrationFailedError('xl driver: post-copy, downtime limits, bandwidth caps and paused migrations are QEMU options; xl has none of them');
    }
    const method = options.method ?? this.options.mode;
    if (!(XL_METHODS as readonly string[]).includes(method)) throw new MigrationFailedError(`xl driver: no method "${method}" (known: ${XL_METHODS.join(', ')})`);
    const startedAtMs = hostNowMs();
    if (method === 'save-restore') {
      const save = await this.xl(['save', this.options.domain, this.options.saveFile]);
      const restore = await this.xl(['restore', this.options.saveFile]);
      await this.readDomid();
      return { startedAtMs, completedAtMs: hostNowMs(), totalMs: save.ms + restore.ms, downtimeMs: save.ms + restore.ms, setupMs: null, transferredBytes: null };
    }
    const transport = this.options.migrateTransport ? ['-s', this.options.migrateTransport] : [];
    const migrate = await this.xl(['migrate', ...transport, this.options.domain, this.options.target]);
    await this.readDomid();
    return { startedAtMs, completedAtMs: hostNowMs(), totalMs: migrate.ms, downtimeMs: null, setupMs: null, transferredBytes: null };
  }

  async injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null> {
    const guestFault = GUEST_CONSOLE_FAULTS[fault];
    if (guestFault && phase === 'after' && this.options.domuConsoleRunner) {
      await this.run([this.options.domuConsoleRunner, this.options.domain, '30', guestFault.command], (failure) => `${fault} in ${this.options.domain}: ${failure}`);
      return { fault, phase, atMs: hostNowMs(), detail: guestFault.detail };
    }
    if (fault !== 'nic-replug' || phase !== 'after' || !this.options.vifSpec) return null;
    await this.xl(['network-detach', this.options.domain, '0']);
    await sleep(500);
    await this.xl(['network-attach', this.options.domain, ...this.options.vifSpec.split(',')]);
    return { fault, phase, atMs: hostNowMs(), detail: `xl network-detach ${this.options.domain} 0, network-attach ${this.options.vifSpec}` };
  }

  async cleanup(): Promise<void> {
    // The domain belongs to whoever created it; the driver only moved it.
  }

  /** Runs `xl ARGS` in dom0 (here, through the remote shell or dom0's console); a non-zero exit is a MigrationFailedError with xl's words. */
  xl(args: string[]): Promise<TimedResult> {
    return this.run([this.options.xl, ...args], (failure) => `xl ${args[0]} ${failure}`);
  }

  private async run(argv: string[], describe: (failure: string) => string): Promise<TimedResult> {
    const timeoutMs = this.options.timeoutMs;
    const shell = this.options.dom0Shell;
    if (shell) {
      const commandLine = `${argv.map(shellQuote).join(' ')} 2>&1`;
      this.commands.push([commandLine]);
      const started = performance.now();
      const { exitCode, output } = await shell.run(commandLine, timeoutMs).catch((error: Error) => {
        throw new MigrationFailedError(describe(error.message));
      });
      const ms = Math.round(performance.now() - started);
      if (exitCode !== 0) throw new MigrationFailedError(describe(`exited ${exitCode}: ${output.trim().split('\n').slice(-1)[0] || 'no output'}`));
      return { stdout: output, stderr: '', ms };
    }
    const [command, ...commandArgs] = this.options.remoteShell ? [...this.options.remoteShell, argv.map(shellQuote).join(' ')] : argv;
    this.commands.push([command!, ...commandArgs]);
    return runTimed(command!, commandArgs, timeoutMs, ({ code, signal, lastLine }) =>
      describe(`${signal ? `killed after ${timeoutMs} ms` : `exited ${code}`}: ${lastLine ?? 'no output'}`),
    );
  }
}
