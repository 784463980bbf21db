/** What a driver measured of one migration, from the hypervisor's side. Times are host CLOCK_REALTIME ms. */
export interface MigrationTiming {
  startedAtMs: number;
  completedAtMs: number;
  /** The hypervisor's own figures; null where it gives none. */
  totalMs: number | null;
  downtimeMs: number | null;
  setupMs: number | null;
  transferredBytes: number | null;
}

/**
 * One way of moving a running guest: QEMU QMP, libvirt, xl. A driver knows how to migrate; what to run and in which
 * order is the campaign's business.
 */
export interface MigrationDriver {
  readonly name: string;
  /** Boots (or attaches to) the guest. */
  prepare(): Promise<void>;
  migrate(): Promise<MigrationTiming>;
  cleanup(): Promise<void>;
}
