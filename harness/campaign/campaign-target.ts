import type { AgentRecord } from '../collector/agent-record.js';
import type { CollectorServer } from '../collector/collector-server.js';
import type { BlackoutMeter } from '../blackout/blackout-meter.js';
import type { NetworkWitness } from '../blackout/network-witness.js';
import type { OutsideView } from '../blackout/outside-view.js';
import type { MigrationDriver } from '../drivers/migration-driver.js';
import type { LabResults } from '../report/lab-results.js';

/**
 * What a campaign runs against: how to bring a guest up with its agent reporting to the campaign's collector, and how
 * to take it all down again. A lab (QEMU, libvirt, nested Xen, the namespace simulation) is one target; the campaign
 * runner knows none of them by name, and a target knows nothing of faults, journals or verdicts.
 */
export interface GuestTarget {
  /** The driver's name, as the journal and results.json record it (qmp, libvirt, xl, sim). */
  readonly driverName: string;
  /** Where the campaign's collector listens, as the guest reaches it; port 0 picks a free one. */
  readonly collectorHost: string;
  readonly collectorPort: number;
  /** The fleet secret the guest's agent key was derived from, where the guest was given one; otherwise a fresh one. */
  readonly fleetSecret?: string;
  /** What else makes this campaign this one (a resumed run must match): the Xen guest's type and kernel. */
  readonly identity?: Record<string, unknown>;
  /** Boots the guest (or attaches to it) and resolves once its agent has said hello to `context.collector`. */
  bringUp(context: TargetContext): Promise<RunningGuest>;
  /** Called exactly once, after the campaign or a failed bring-up, whatever happened. */
  tearDown(log: (line: string) => void): Promise<void>;
}

export interface TargetContext {
  collector: CollectorServer;
  /** The secret the guest agent's key is derived from (agentKeyFor). */
  fleetSecret: string;
  /** The port the collector really listens on. */
  collectorPort: number;
  /** Where the target keeps its logs (serial consoles, domain XML, the agent's log). */
  logsDir: string;
  log: (line: string) => void;
}

/** A guest that is up, its agent connected: what the runner migrates and measures. */
export interface RunningGuest {
  driver: MigrationDriver;
  /** The guest's agent, hello said; null for a guest run without one (--agentless), measured from outside only. */
  agent: AgentRecord | null;
  meter: BlackoutMeter | null;
  /** The lab's bridge, watched for the guest's announcements and its MAC's moves; absent where the lab has none. */
  witness?: { network: NetworkWitness; mac: string };
  /** ICMP timestamp probes answered by the guest's kernel: the outside view; absent where the lab has none. */
  outside?: OutsideView;
  /** Where the guest is now (a tap, a host, a domid): shown as a migration's from and to. */
  where: () => string;
  /**
   * The migration resets the agent's connection (libvirt's user networking): measure from its reconnection, not from
   * the hypervisor's "completed", or there is nothing to measure yet.
   */
  reconnectsAfterMigration?: boolean;
  bootToAgentMs: number;
  hypervisor: LabResults['hypervisor'];
  guest: LabResults['guest'];
  /** After the last migration, before the results are written (the Xen lab destroys its domU, so dom0's logs close). */
  afterMigrations?: () => Promise<void>;
}
