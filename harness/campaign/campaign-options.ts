import { FAULTS, type FaultName, type MigrateOptions } from '../drivers/migration-driver.js';
import type { ExpectedVerdict } from '../report/lab-results.js';

/**
 * A campaign's options, whatever its target: the matrix, the expectation, the measurements, and the guest the labs
 * build (kernel, memory, QEMU) for the targets that build one.
 */
export interface CampaignOptions {
  /** The campaign: each row of faults (none: []) runs this many migrations. */
  faultMatrix: FaultName[][];
  migrationsPerFault: number;
  /**
   * Sham migrations spread among the real ones (`--controls`): announced and measured exactly like a migration, but
   * nothing moves. Any verdict worse than transparent on one is a false positive.
   */
  controls: number;
  /** The driver's ways of moving the guest, each running the whole matrix (xl: save-restore, migrate); none for QEMU. */
  methods?: readonly string[];
  expect: ExpectedVerdict;
  /** A migration worse than expected fails the run (campaigns: exit 5); the lab only reports. */
  failOnUnexpected: boolean;
  migrate: Omit<MigrateOptions, 'pausedForMs'>;
  /** How long the long-pause fault keeps the guest stopped before migrating it. */
  longPauseMs: number;
  destQemuBinary?: string;
  /**
   * No agent in the guest (QEMU guest only): measured from outside alone (ICMP timestamps, the lab bridge), and each
   * verdict is the outside view's.
   */
  agentless: boolean;
  /**
   * Beside the agent, also probe the guest with ICMP timestamps (the outside view); always on when agentless. Off by
   * default: with its 200 requests a second on a TCG guest, 3 of 25 lab migrations had no agent clock lag (its
   * exchanges too slow after the migration), against none of 20 without them.
   */
  outsideView: boolean;
  /** UDP blackout probe interval, 1–10 ms; 0 turns the meter off. */
  blackoutIntervalMs: number;
  outDir: string;
  qemuBinary: string;
  memoryMiB: number;
  cacheDir: string;
  /** How long after each migration the harness keeps listening before it measures and moves on. */
  settleMs: number;
  bootTimeoutMs: number;
  migrationTimeoutMs: number;
  collectorPort: number;
  /** Probes the guest agent runs (default: all). */
  guestProbes: string[] | null;
  /** A time daemon in the guest (chronyd, served by the lab namespace), or none: then the agent steps the clock itself. */
  guestTimeDaemon: 'chronyd' | null;
  /** The labs' guest kernel: a Debian release's cloud kernel by name (bullseye, bookworm-backports, …) or a file; null: bookworm's. */
  guestKernel: string | null;
  /** The QEMU machine type the guest starts on (pc, q35, pc-i440fx-7.2); null: pc. Destinations run what it runs. */
  machine: string | null;
  /**
   * The QEMU guest's RAM in a shared file (/dev/shm) both processes of a same-host migration map, migrated with
   * `x-ignore-shared`: no RAM is copied, as a same-host live upgrade can do it.
   */
  sharedMemory: boolean;
}

export const DEFAULT_CAMPAIGN_OPTIONS: Omit<CampaignOptions, 'outDir'> = {
  faultMatrix: [[], ...FAULTS.map((fault) => [fault])],
  migrationsPerFault: 1,
  controls: 0,
  expect: 'disrupted',
  failOnUnexpected: false,
  migrate: {},
  longPauseMs: 3000,
  agentless: false,
  outsideView: false,
  blackoutIntervalMs: 5,
  qemuBinary: 'qemu-system-x86_64',
  memoryMiB: 512,
  cacheDir: '/var/cache/flinch',
  settleMs: 3000,
  bootTimeoutMs: 120_000,
  migrationTimeoutMs: 120_000,
  collectorPort: 7431,
  guestProbes: null,
  guestTimeDaemon: null,
  guestKernel: null,
  machine: null,
  sharedMemory: false,
};
