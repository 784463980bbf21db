/** What a driver measured of one migration, from the hypervisor's side. Times are host CLOCK_REALTIME ms. */
export interface MigrationTiming {
  startedAtMs: number;
  completedAtMs: number;
  /** The hypervisor's own figures; null where it gives none. */
  totalMs: number | null;
  downtimeMs: number | null;
  setupMs: number | null;
  transferredBytes: number | null;
  /**
   * When the guest's vCPUs stopped and ran again, in host realtime ms, as the hypervisor stamped the events (QMP: the
   * source's STOP and the destination's RESUME); undefined where the driver has no such events.
   */
  pause?: { stoppedAtMs: number; resumedAtMs: number } | null;
}

/** How to migrate, where the hypervisor lets the caller choose. */
export interface MigrateOptions {
  /** QEMU `downtime-limit`: the longest stop the hypervisor aims for. */
  downtimeLimitMs?: number;
  /** QEMU `max-bandwidth`, bytes a second. */
  maxBandwidthBytesPerSecond?: number;
  /** Switch to post-copy once the first pass is under way. */
  postcopy?: boolean;
  /**
   * A deterministic long pause: stop the guest, wait this long, migrate it stopped, and continue it on the
   * destination. The guest is frozen for this plus the whole migration.
   */
  pausedForMs?: number;
  /** Which of a driver's ways of moving the guest (xl: save-restore or migrate); drivers with one way ignore it. */
  method?: string;
}

/**
 * The faults a campaign can compose into a migration. Each has a part before the migration and a part after it;
 * the driver says which it can do.
 *
 * - carrier-flap: the NIC's link goes down and up again on the destination (QMP set_link).
 * - nic-replug: the NIC is unplugged and plugged again with the same MAC on the destination (device_del/device_add).
 * - link-down: the link is down before the migration and comes back on the destination.
 * - long-pause: the migration is made with the guest stopped for a while (stop → migrate → cont).
 * - guest-firewall-flush: `nft flush ruleset` inside the guest just after the migration (the netfront/iptables seed).
 * - guest-clock-step: the guest's CLOCK_REALTIME is stepped 5 s forward just after the migration.
 */
export const FAULTS = ['carrier-flap', 'nic-replug', 'link-down', 'long-pause', 'guest-firewall-flush', 'guest-clock-step'] as const;
export type FaultName = (typeof FAULTS)[number];

/** How far the guest-clock-step fault steps CLOCK_REALTIME. */
const CLOCK_STEP_S = 5;

/**
 * The guest-side faults as what a person at the guest's console would type; the drivers differ only in how they reach
 * that console (QEMU's second serial port, or a Xen domU's console through dom0).
 */
export const GUEST_CONSOLE_FAULTS: Partial<Record<FaultName, { command: string; detail: string }>> = {
  'guest-firewall-flush': { command: 'nft flush ruleset', detail: 'nft flush ruleset in the guest' },
  'guest-clock-step': {
    command: `date -s "@$(( $(date +%s) + ${CLOCK_STEP_S} ))" >/dev/null`,
    detail: `CLOCK_REALTIME stepped ${CLOCK_STEP_S} s forward in the guest`,
  },
};

export interface FaultRecord {
  fault: FaultName;
  phase: 'before' | 'after';
  atMs: number;
  detail: string;
}

/**
 * One way of moving a running guest: QEMU QMP, libvirt, xl. A driver knows how to migrate and how to inject the
 * faults it supports; what to run and in which order is the campaign's business.
 */
export interface MigrationDriver {
  readonly name: string;
  readonly faults: readonly FaultName[];
  /** Boots (or attaches to) the guest. */
  prepare(): Promise<void>;
  migrate(options?: MigrateOptions): Promise<MigrationTiming>;
  /** The part of `fault` that belongs to `phase`; resolves with what was done, or null if the fault has no such part. */
  injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null>;
  cleanup(): Promise<void>;
}

/**
 * A campaign's fault matrix: comma-separated rows, each `none` or faults joined with `+` to compose them in one
 * migration, e.g. `none,carrier-flap,link-down+guest-firewall-flush`.
 */
export function parseFaultMatrix(value: string): FaultName[][] {
  const rows = value.split(',').map((row) => row.trim()).filter(Boolean);
  if (rows.length === 0) throw new Error('no faults given (use none for a plain migration)');
  return rows.map((row) => {
    if (row === 'none') return [];
    const faults = row.split('+').map((f) => f.trim());
    for (const name of faults) {
      if (!(FAULTS as readonly string[]).includes(name)) throw new Error(`unknown fault "${name}" (known: none, ${FAULTS.join(', ')})`);
    }
    return [...new Set(faults)] as FaultName[];
  });
}

export function faultLabel(faults: readonly FaultName[]): string {
  return faults.length === 0 ? 'none' : faults.join('+');
}
