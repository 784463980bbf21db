import { setTimeout as sleep } from 'node:timers/promises';
import { hostNowMs } from '../host-clock.js';
import type { FaultName, FaultRecord, MigrateOptions, MigrationDriver, MigrationTiming } from './migration-driver.js';
import { MigrationFailedError } from './qmp-driver.js';
import type { TimedResult } from '../../system/timed-command.js';
import type { LineMonitor } from '../../system/line-monitor.js';
import { pauseFromLifecycle, virshTimed, watchLifecycleEvents, type LifecycleEvent } from '../../system/virsh.js';

/**
 * The `virsh migrate` flags a user may add, and only these: what a domain with disks needs to move. A disk on storage
 * both hosts share but libvirt does not recognise as shared (not NFS, Ceph, GlusterFS…) is refused as unsafe unless
 * told (`unsafe`); one on local storage is copied along (`copy-storage-all`, `copy-storage-inc`). Others change how the
 * memory moves (`compressed`, `auto-converge`) or its transport (`tls`, `p2p`, `tunnelled` with `p2p`).
 */
export const LIBVIRT_MIGRATE_FLAGS = ['unsafe', 'copy-storage-all', 'copy-storage-inc', 'compressed', 'auto-converge', 'tls', 'p2p', 'tunnelled'] as const;
export type LibvirtMigrateFlag = (typeof LIBVIRT_MIGRATE_FLAGS)[number];

export interface LibvirtDriverOptions {
  /** libvirt connection URI of the source, e.g. qemu:///system. */
  uri: string;
  domain: string;
  /** `save-restore`: virsh save then virsh restore; `migrate`: virsh migrate --live to `destinationUri`. */
  mode: 'save-restore' | 'migrate';
  saveFile: string;
  destinationUri: string | null;
  /**
   * Where the destination QEMU listens for the migration stream (`virsh migrate --migrateuri`), e.g.
   * tcp://127.0.0.1:49300; libvirt's default names the destination's hostname, which two libvirtds on one machine
   * (separate UTS namespaces) do not resolve.
   */
  migrateUri: string | null;
  /** The guest NIC's MAC, for domif-setlink. */
  mac: string;
  /** More `virsh migrate` flags, from LIBVIRT_MIGRATE_FLAGS (how the domain's disks travel, or that they need not). */
  migrateFlags?: readonly LibvirtMigrateFlag[];
  virsh: string;
  timeoutMs: number;
  /** A live migration moves the domain's definition too (--persistent --undefinesource); false for a transient domain. */
  persistent?: boolean;
}

/** The figures of `virsh domjobinfo --completed` that flinch reads; null where libvirt did not give one. */
export interface DomainJobInfo {
  operation: string | null;
  timeElapsedMs: number | null;
  downtimeMs: number | null;
  setupMs: number | null;
  dataProcessedBytes: number | null;
}

const UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** Parses `virsh domjobinfo` ("Key:   value unit" lines). */
export function parseDomJobInfo(text: string): DomainJobInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z ]+):\s+(.*)$/.exec(line.trim());
    if (match) fields.set(match[1]!.trim(), match[2]!.trim());
  }
  const ms = (key: string) => {
    const match = /^(\d+)\s*ms$/.exec(fields.get(key) ?? '');
    return match ? Number(match[1]) : null;
  };
  const bytes = (key: string) => {
    const match = /^([\d.]+)\s*(B|KiB|MiB|GiB|TiB)$/.exec(fields.get(key) ?? '');
    return match ? Math.round(Number(match[1]) * UNITS[match[2]!]!) : null;
  };
  return {
    operation: fields.get('Operation') ?? null,
    timeElapsedMs: ms('Time elapsed'),
    downtimeMs: ms('Total downtime'),
    setupMs: ms('Setup time'),
    dataProcessedBytes: bytes('Data processed'),
  };
}

/** Past this many lifecycle events the oldest are forgotten; a campaign sees a few per migration. */
const MAX_LIFECYCLE_EVENTS = 10_000;
/** How long after a migration its Resumed event may still be on its way from libvirtd to virsh. */
const LIFECYCLE_WAIT_MS = 2000;
/** How long `virsh event` is given to connect and register before the first migration. */
const EVENT_REGISTRATION_MS = 1000;

/**
 * libvirt as a migration driver, through `virsh`: save/restore, or a live migration to another libvirtd. The job's
 * own figures come from `virsh domjobinfo --completed`. For save/restore, libvirt's "Total downtime" is the save's
 * stop-and-copy only; the guest stays stopped until the restore has finished, which `totalMs` (both commands) shows.
 */
export class LibvirtDriver implements MigrationDriver {
  readonly name = 'libvirt';
  readonly faults: readonly FaultName[] = ['carrier-flap', 'link-down', 'long-pause'];
  lastJob: DomainJobInfo | null = null;
  private readonly lifecycle: LifecycleEvent[] = [];
  private watchers: LineMonitor[] = [];
  /** Where the domain runs now: live migrations go back and forth between the two libvirtds. */
  private here: string;
  private there: string | null;

  constructor(private readonly options: LibvirtDriverOptions) {
    this.here = options.uri;
    this.there = options.destinationUri;
  }

  get currentUri(): string {
    return this.here;
  }

  async prepare(): Promise<void> {
    const state = (await this.virsh(['domstate', this.options.domain])).stdout.trim();
    if (state !== 'running') throw new MigrationFailedError(`libvirt domain ${this.options.domain} is ${state}, not running`);
    // Every libvirtd the domain can run on: the pause is its stop on one and its run again on the same or the other.
    for (const uri of [this.options.uri, this.options.destinationUri].filter((u): u is string => u !== null)) {
      this.watchers.push(watchLifecycleEvents(this.options.virsh, uri, (event) => {
        this.lifecycle.push(event);
        if (this.lifecycle.length > MAX_LIFECYCLE_EVENTS) this.lifecycle.shift();
      }));
    }
    await Promise.all(this.watchers.map((w) => w.ready));
    // virsh registers for events only after it has connected, and says nothing when it has.
    await sleep(EVENT_REGISTRATION_MS);
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrationTiming> {
    const startedAtMs = hostNowMs();
    if (options.pausedForMs !== undefined) {
      await this.virsh(['suspend', this.options.domain]);
      await sleep(options.pausedForMs);
    }
    let totalMs: number;
    if (this.options.mode === 'save-restore') {
      if (options.postcopy || options.downtimeLimitMs !== undefined || options.maxBandwidthBytesPerSecond !== undefined) {
        throw new MigrationFailedError('libvirt save/restore has no post-copy, downtime limit or bandwidth cap; use mode migrate');
      }
      const save = await this.virsh(['save', this.options.domain, this.options.saveFile]);
      this.lastJob = parseDomJobInfo((await this.virsh(['domjobinfo', '--completed', '--keep-completed', this.options.domain])).stdout);
      const restore = await this.virsh(['restore', this.options.saveFile, ...(options.pausedForMs !== undefined ? ['--running'] : [])]);
      totalMs = save.ms + restore.ms;
    } else {
      const destination = this.there;
      if (!destination) throw new MigrationFailedError('libvirt migrate needs a destination URI');
      if (options.downtimeLimitMs !== undefined) await this.virsh(['migrate-setmaxdowntime', this.options.domain, String(options.downtimeLimitMs)]);
      // The definition moves with a persistent domain (and a transient one stays transient): migrated back, it is
      // defined where it was, once.
      const flags = ['--live', ...(this.options.persistent === false ? [] : ['--persistent', '--undefinesource']), '--verbose'];
      if (this.options.migrateUri) flags.push('--migrateuri', this.options.migrateUri);
      for (const flag of this.options.migrateFlags ?? []) flags.push(`--${flag}`);
      if (options.postcopy) flags.push('--postcopy', '--postcopy-after-precopy');
      if (options.maxBandwidthBytesPerSecond !== undefined) flags.push('--bandwidth', String(Math.max(1, Math.round(options.maxBandwidthBytesPerSecond / 1024 ** 2))));
      const migrate = await this.virsh(['migrate', ...flags, this.options.domain, destination]);
      this.there = this.here;
      this.here = destination;
      this.lastJob = parseDomJobInfo((await this.virsh(['domjobinfo', '--completed', this.options.domain]).catch(() => ({ stdout: '', stderr: '', ms: 0 }))).stdout);
      totalMs = migrate.ms;
    }
    if (options.pausedForMs !== undefined && this.options.mode === 'migrate') await this.virsh(['resume', this.options.domain]);
    const completedAtMs = hostNowMs();
    const pauseSoFar = () => pauseFromLifecycle(this.lifecycle, this.options.domain, startedAtMs);
    let pause = pauseSoFar();
    const waitUntilMs = completedAtMs + LIFECYCLE_WAIT_MS;
    while (!pause && this.watchers.length > 0 && hostNowMs() < waitUntilMs) {
      await sleep(20);
      pause = pauseSoFar();
    }
    return {
      startedAtMs,
      completedAtMs,
      ...(this.watchers.length > 0 ? { pause } : {}),
      totalMs,
      downtimeMs: this.lastJob?.downtimeMs ?? null,
      setupMs: this.lastJob?.setupMs ?? null,
      transferredBytes: this.lastJob?.dataProcessedBytes ?? null,
    };
  }

  async injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null> {
    const record = (detail: string): FaultRecord => ({ fault, phase, atMs: hostNowMs(), detail });
    const setLink = (state: 'up' | 'down') => this.virsh(['domif-setlink', this.options.domain, this.options.mac, state]);
    switch (`${fault}/${phase}`) {
      case 'carrier-flap/after':
        await setLink('down');
        await sleep(300);
        await setLink('up');
        return record(`virsh domif-setlink ${this.options.mac} down, 300 ms, up`);
      case 'link-down/before':
        await setLink('down');
        return record('virsh domif-setlink down before the migration');
      case 'link-down/after':
        await setLink('up');
        return record('virsh domif-setlink up after the migration');
      default:
        return null;
    }
  }

  async cleanup(): Promise<void> {
    // The domain belongs to whoever defined it; the driver only moved it, and watched it.
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.watchers = [];
  }

  virsh(args: string[], uri = this.here): Promise<TimedResult> {
    return virshTimed(this.options.virsh, uri, args, this.options.timeoutMs);
  }
}
