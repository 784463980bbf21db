import { setTimeout as sleep } from 'node:timers/promises';
import { hostNowMs } from '../host-clock.js';
import { GUEST_CONSOLE_FAULTS, type FaultName, type FaultRecord, type MigrateOptions, type MigrationDriver, type MigrationTiming } from './migration-driver.js';
import { MigrationFailedError } from './qmp-driver.js';
import type { TimedResult } from '../../system/timed-command.js';
import { Dom0, type Dom0Options } from '../../system/xl.js';

export const XL_METHODS = ['save-restore', 'migrate'] as const;
export type XlMethod = (typeof XL_METHODS)[number];

/** Where xl runs (Dom0Options: xl, remoteShell, dom0Shell, timeoutMs), and what it moves where. */
export interface XlDriverOptions extends Dom0Options {
  /** The domain's name, as `xl list` shows it. */
  domain: string;
  /** `save-restore`: `xl save` then `xl restore`; `migrate`: `xl migrate` to `target`. A migration's `method` overrides it. */
  mode: XlMethod;
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
}

/**
 * Xen's toolstack as a migration driver: `xl save`/`xl restore` or `xl migrate`, run in dom0 directly or through a
 * remote shell. xl reports no downtime of its own; the driver times its commands. For save/restore the guest is not
 * running from the start of the save to the end of the restore, which is given as the downtime (an upper bound).
 */
export class XlDriver implements MigrationDriver {
  readonly name = 'xl';
  readonly faults: readonly FaultName[];
  private readonly dom0: Dom0;
  /** The domain's id as of the last prepare or migration: each restore and migration gives it a new one. */
  domid: string | null = null;

  constructor(private readonly options: XlDriverOptions) {
    this.dom0 = new Dom0(options);
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
      await this.dom0.run([this.options.domuConsoleRunner, this.options.domain, '30', guestFault.command], (failure) => `${fault} in ${this.options.domain}: ${failure}`);
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

  /** Every command run in dom0, as spawned. */
  get commands(): readonly string[][] {
    return this.dom0.commands;
  }

  /** Runs `xl ARGS` in dom0 (here, through the remote shell or dom0's console); a failure carries xl's words. */
  xl(args: string[]): Promise<TimedResult> {
    return this.dom0.xl(args);
  }
}
