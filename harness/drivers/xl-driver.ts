import { setTimeout as sleep } from 'node:timers/promises';
import { hostNowMs } from '../host-clock.js';
import type { FaultName, FaultRecord, MigrateOptions, MigrationDriver, MigrationTiming } from './migration-driver.js';
import { MigrationFailedError } from './qmp-driver.js';
import { runTimed, type TimedResult } from './timed-command.js';

export interface XlDriverOptions {
  /** The domain's name, as `xl list` shows it. */
  domain: string;
  /** `save-restore`: `xl save` then `xl restore`; `migrate`: `xl migrate` to `target`. */
  mode: 'save-restore' | 'migrate';
  xl: string;
  /**
   * How to reach the Xen host's dom0: null runs xl here; otherwise a command that takes one shell command line as its
   * last argument, e.g. ['ssh', '-o', 'BatchMode=yes', 'root@xenhost'].
   */
  remoteShell: string[] | null;
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

  constructor(private readonly options: XlDriverOptions) {
    this.faults = options.vifSpec ? ['nic-replug'] : [];
  }

  async prepare(): Promise<void> {
    await this.xl(['list', this.options.domain]);
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrationTiming> {
    if (options.postcopy || options.downtimeLimitMs !== undefined || options.maxBandwidthBytesPerSecond !== undefined || options.pausedForMs !== undefined) {
      throw new MigrationFailedError('xl driver: post-copy, downtime limits, bandwidth caps and paused migrations are QEMU options; xl has none of them');
    }
    const startedAtMs = hostNowMs();
    if (this.options.mode === 'save-restore') {
      const save = await this.xl(['save', this.options.domain, this.options.saveFile]);
      const restore = await this.xl(['restore', this.options.saveFile]);
      return { startedAtMs, completedAtMs: hostNowMs(), totalMs: save.ms + restore.ms, downtimeMs: save.ms + restore.ms, setupMs: null, transferredBytes: null };
    }
    const transport = this.options.migrateTransport ? ['-s', this.options.migrateTransport] : [];
    const migrate = await this.xl(['migrate', ...transport, this.options.domain, this.options.target]);
    return { startedAtMs, completedAtMs: hostNowMs(), totalMs: migrate.ms, downtimeMs: null, setupMs: null, transferredBytes: null };
  }

  async injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null> {
    if (fault !== 'nic-replug' || phase !== 'after' || !this.options.vifSpec) return null;
    await this.xl(['network-detach', this.options.domain, '0']);
    await sleep(500);
    await this.xl(['network-attach', this.options.domain, ...this.options.vifSpec.split(',')]);
    return { fault, phase, atMs: hostNowMs(), detail: `xl network-detach ${this.options.domain} 0, network-attach ${this.options.vifSpec}` };
  }

  async cleanup(): Promise<void> {
    // The domain belongs to whoever created it; the driver only moved it.
  }

  /** Runs `xl ARGS` in dom0 (here or through the remote shell); a non-zero exit is a MigrationFailedError with xl's words. */
  xl(args: string[]): Promise<TimedResult> {
    const argv = [this.options.xl, ...args];
    const [command, ...commandArgs] = this.options.remoteShell ? [...this.options.remoteShell, argv.map(shellQuote).join(' ')] : argv;
    this.commands.push([command!, ...commandArgs]);
    return runTimed(command!, commandArgs, this.options.timeoutMs, ({ code, signal, lastLine }) =>
      `xl ${args[0]} ${signal ? `killed after ${this.options.timeoutMs} ms` : `exited ${code}`}: ${lastLine ?? 'no output'}`,
    );
  }
}
