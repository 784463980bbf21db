import { setTimeout as sleep } from 'node:timers/promises';
import { hostNowMs } from '../host-clock.js';
import { GUEST_CONSOLE_FAULTS, type FaultName, type FaultRecord, type MigrateOptions, type MigrationDriver, type MigrationTiming } from './migration-driver.js';
import { MigrationFailedError } from './qmp-driver.js';
import type { TimedResult } from '../../system/timed-command.js';
import { Dom0, type Dom0Options, type Dom0Shell } from '../../system/xl.js';
import { ReleaseDomainWatch } from '../../system/xenstore-watch.js';

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
  /**
   * dom0's `xenstore-watch` (xenstore-utils), to stamp the guest's suspend for the pause; null: no pause. A dom0
   * without it or without bash still migrates, with the pause left null.
   */
  xenstoreWatch?: string | null;
  /** Where in dom0 the watch keeps its stamps during a migration. */
  watchFile?: string;
  /**
   * A second Xen host to migrate to and back (`flinch campaign --driver xl --xl-dest`): how to reach its dom0, and
   * the name the first host's xl migrate gives it; the first host is `target` from there. Each migration goes to the
   * other host; save/restore runs where the domain is.
   */
  peer?: { remoteShell: string[] | null; dom0Shell?: Dom0Shell; target: string } | null;
  /** Delete the save file once it has been restored from: on a user's host, it is a copy of the guest's memory. */
  removeSaveFile?: boolean;
}

/**
 * Xen's toolstack as a migration driver: `xl save`/`xl restore` or `xl migrate`, run in dom0 directly or through a
 * remote shell. xl reports no downtime of its own; the driver times its commands. For save/restore the guest is not
 * running from the start of the save to the end of the restore, which is given as the downtime (an upper bound).
 */
export class XlDriver implements MigrationDriver {
  readonly name = 'xl';
  readonly faults: readonly FaultName[];
  private dom0: Dom0;
  /** The other host's dom0 and the name xl migrate gives it, where there is a peer. */
  private other: { dom0: Dom0; target: string } | null;
  /** Whether the domain is on the peer now. */
  private onPeer = false;
  /** The domain's id as of the last prepare or migration: each restore and migration gives it a new one. */
  domid: string | null = null;

  constructor(private readonly options: XlDriverOptions) {
    this.dom0 = new Dom0(options);
    // The peer's own way in, never the first host's: its console (the two-host lab) or its ssh.
    this.other = options.peer ? { dom0: new Dom0({ ...options, remoteShell: options.peer.remoteShell, dom0Shell: options.peer.dom0Shell }), target: options.peer.target } : null;
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
    const watch = this.options.xenstoreWatch ? await ReleaseDomainWatch.start(this.dom0, this.options.xenstoreWatch, this.options.watchFile ?? '/tmp/flinch-release-watch', hostNowMs) : null;
    try {
      const startedAtMs = hostNowMs();
      let totalMs: number;
      let downtimeMs: number | null = null;
      // xl unpauses the domain as the last step of a restore or a migration's receiving side and then returns: its
      // return is when the guest ran again at the latest (xl gives no event for the unpause itself). Taken before
      // anything else is run there: removing the save file over ssh took 1.4 s more in the nested dom0.
      let completedAtMs: number;
      if (method === 'save-restore') {
        const save = await this.xl(['save', this.options.domain, this.options.saveFile]);
        const restore = await this.xl(['restore', this.options.saveFile]);
        completedAtMs = hostNowMs();
        totalMs = downtimeMs = save.ms + restore.ms;
        if (this.options.removeSaveFile) await this.dom0.run(['rm', '-f', this.options.saveFile], (failure) => `removing ${this.options.saveFile}: ${failure}`);
      } else if (this.other) {
        // To the other host, whose xl receives it; the watch stamped the suspend on this one.
        const to = this.onPeer ? this.options.target : this.other.target;
        totalMs = (await this.xl(['migrate', this.options.domain, to])).ms;
        completedAtMs = hostNowMs();
        [this.dom0, this.other.dom0] = [this.other.dom0, this.dom0];
        this.onPeer = !this.onPeer;
      } else {
        // -s '': xl runs the "host" itself instead of ssh HOST xl migrate-receive (the lab's pass-through does so too).
        const transport = this.options.migrateTransport !== null ? ['-s', this.options.migrateTransport] : [];
        totalMs = (await this.xl(['migrate', ...transport, this.options.domain, this.options.target])).ms;
        completedAtMs = hostNowMs();
      }
      const released = watch ? await watch.stop() : null;
      await this.readDomid();
      return {
        startedAtMs, completedAtMs, totalMs, downtimeMs, setupMs: null, transferredBytes: null,
        ...(this.options.xenstoreWatch ? { pause: released !== null && released < completedAtMs ? { stoppedAtMs: released, resumedAtMs: completedAtMs } : null } : {}),
      };
    } finally {
      await watch?.stop();
    }
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

  /** Which host the domain is on now: the first (`target`) or the peer. */
  get where(): string {
    return this.onPeer && this.other ? this.other.target : this.options.target;
  }

  /** Whether the domain is on the peer host now (a campaign leaves it where it found it). */
  get isOnPeer(): boolean {
    return this.onPeer;
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
