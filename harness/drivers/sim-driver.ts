import { LAB_GUEST_FIREWALL } from '../lab/guest-initramfs.js';
import { mkdirSync, existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ip, addNetns, deleteNetns } from '../../system/ip.js';
import { runCommand } from '../../system/run-command.js';
import { hostNowMs } from '../host-clock.js';
import type { FaultName, FaultRecord, MigrateOptions, MigrationDriver, MigrationTiming } from './migration-driver.js';

/**
 * A SIMULATION, for fast tests: the "guest" is a network namespace with a veth to a "host" namespace, and its
 * processes (the agent) sit in a cgroup. A "migration" freezes that cgroup for a while, which is what a guest's
 * processes live through in a real one, and the faults are done for real with iproute2 and nft on the veth and in the
 * namespace. Nothing here is a hypervisor: there is no memory copy, no NOTIFY_PEERS, and the clock is the host's
 * (so there is no clock-step fault: a namespace has no clock of its own).
 */
export interface SimDriverOptions {
  id: string;
  /** The simulated downtime of each migration: how long the guest's processes stay frozen. */
  downtimeMs: number;
  guestAddress: string;
  hostAddress: string;
  prefixLength: number;
  guestMac: string;
  /** Where the freezer hierarchy is mounted, when not at its usual place (see CgroupFreezer). */
  freezerRoot?: string;
  /**
   * Many simulated guests on one simulated host (a rollout): the host end of each guest's veth joins this bridge in
   * this namespace, which holds hostAddress, instead of a host namespace of the guest's own.
   */
  bridge?: { netns: string; name: string };
}

/**
 * cgroup v1's freezer hierarchy (hybrid hosts like this one) or cgroup v2's cgroup.freeze, under `root`: the
 * freezer mount, /sys/fs/cgroup/freezer by default, or a second mount of the same hierarchy elsewhere for a process
 * that runs under `ip netns exec`, which remounts /sys and hides the cgroup mounts beneath it.
 */
export class CgroupFreezer {
  readonly dir: string;
  private readonly v1: boolean;

  constructor(name: string, root = existsSync('/sys/fs/cgroup/freezer/cgroup.procs') ? '/sys/fs/cgroup/freezer' : '/sys/fs/cgroup') {
    if (!existsSync(path.join(root, 'cgroup.procs'))) throw new Error(`${root} is not a cgroup hierarchy (no cgroup.procs)`);
    this.v1 = !existsSync(path.join(root, 'cgroup.controllers'));
    this.dir = path.join(root, name);
    try {
      mkdirSync(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }

  add(pid: number): void {
    writeFileSync(path.join(this.dir, 'cgroup.procs'), String(pid));
  }

  async freeze(frozen: boolean): Promise<void> {
    if (this.v1) writeFileSync(path.join(this.dir, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
    else writeFileSync(path.join(this.dir, 'cgroup.freeze'), frozen ? '1' : '0');
    // Freezing completes asynchronously; wait until the kernel says it is done.
    for (let i = 0; i < 200; i += 1) {
      const state = this.v1
        ? readFileSync(path.join(this.dir, 'freezer.state'), 'utf8').trim()
        : (/frozen (\d)/.exec(readFileSync(path.join(this.dir, 'cgroup.events'), 'utf8'))?.[1] === '1' ? 'FROZEN' : 'THAWED');
      if (state === (frozen ? 'FROZEN' : 'THAWED')) return;
      await sleep(5);
    }
    throw new Error(`cgroup ${this.dir} did not become ${frozen ? 'frozen' : 'thawed'}`);
  }

  remove(): void {
    try {
      rmdirSync(this.dir);
    } catch {
      // still has processes: they are the caller's to end first
    }
  }
}

export class SimDriver implements MigrationDriver {
  readonly name = 'sim';
  readonly faults: readonly FaultName[] = ['carrier-flap', 'nic-replug', 'link-down', 'long-pause', 'guest-firewall-flush'];
  readonly guestNetns: string;
  readonly hostNetns: string;
  readonly freezer: CgroupFreezer;
  /** The host end of the guest's veth. */
  private readonly hostIf: string;

  constructor(private readonly options: SimDriverOptions) {
    this.guestNetns = `flinch-sim-${options.id}-guest`;
    this.hostNetns = options.bridge?.netns ?? `flinch-sim-${options.id}-host`;
    // One bridge holds many: each host end needs a name of its own (at most 15 characters).
    this.hostIf = options.bridge ? `vs${options.id}`.slice(-15) : 'host0';
    this.freezer = new CgroupFreezer(`flinch-sim-${options.id}`, options.freezerRoot);
  }

  async prepare(): Promise<void> {
    if (!this.options.bridge) await addNetns(this.hostNetns);
    await addNetns(this.guestNetns);
    await ip(['link', 'set', 'lo', 'up'], { netns: this.guestNetns });
    await this.plugNic();
    await this.hostEndUp();
    // The guest's own configuration, which a replug loses and the agent's safety net is there to put back.
    await ip(['addr', 'add', `${this.options.guestAddress}/${this.options.prefixLength}`, 'dev', 'eth0'], { netns: this.guestNetns });
    await ip(['link', 'set', 'eth0', 'up'], { netns: this.guestNetns });
    await runCommand('ip', ['netns', 'exec', this.guestNetns, 'nft', '-f', LAB_GUEST_FIREWALL]);
  }

  /** Puts a process of the guest (started with `ip netns exec <guestNetns>`) under the driver's freezer. */
  adopt(pid: number): void {
    this.freezer.add(pid);
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrationTiming> {
    if (options.postcopy || options.downtimeLimitMs !== undefined || options.maxBandwidthBytesPerSecond !== undefined) {
      throw new Error('sim driver: post-copy, downtime limits and bandwidth caps are hypervisor options; a simulation has none');
    }
    const startedAtMs = hostNowMs();
    await this.freezer.freeze(true);
    const frozenAt = hostNowMs();
    await sleep((options.pausedForMs ?? 0) + this.options.downtimeMs);
    await this.freezer.freeze(false);
    const completedAtMs = hostNowMs();
    return { startedAtMs, completedAtMs, totalMs: Math.round(completedAtMs - startedAtMs), downtimeMs: Math.round(completedAtMs - frozenAt), setupMs: null, transferredBytes: null };
  }

  async injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null> {
    const record = (detail: string): FaultRecord => ({ fault, phase, atMs: hostNowMs(), detail });
    const host = { netns: this.hostNetns };
    switch (`${fault}/${phase}`) {
      case 'carrier-flap/after':
        await ip(['link', 'set', this.hostIf, 'down'], host);
        await sleep(300);
        await ip(['link', 'set', this.hostIf, 'up'], host);
        return record('host side of the veth down, 300 ms, up');
      case 'link-down/before':
        await ip(['link', 'set', this.hostIf, 'down'], host);
        return record('host side of the veth down');
      case 'link-down/after':
        await ip(['link', 'set', this.hostIf, 'up'], host);
        return record('host side of the veth up');
      case 'nic-replug/after':
        await ip(['link', 'del', this.hostIf], host);
        await sleep(200);
        await this.plugNic();
        await this.hostEndUp();
        return record(`veth deleted and created again, guest side with the same MAC ${this.options.guestMac}`);
      case 'long-pause/before':
        return null; // the pause is the migration's own: migrate({ pausedForMs })
      case 'guest-firewall-flush/after':
        await runCommand('ip', ['netns', 'exec', this.guestNetns, 'nft', 'flush', 'ruleset']);
        return record('nft flush ruleset in the guest namespace');
      default:
        return null;
    }
  }

  async cleanup(): Promise<void> {
    await this.freezer.freeze(false).catch(() => undefined);
    // Deleting the guest's namespace deletes its veth, both ends; a shared host namespace is its owner's to delete.
    await deleteNetns(this.guestNetns).catch(() => undefined);
    if (!this.options.bridge) await deleteNetns(this.hostNetns).catch(() => undefined);
    this.freezer.remove();
  }

  /** A veth whose guest end is eth0 with the guest's MAC; it starts down with no address, as a NIC does. */
  private async plugNic(): Promise<void> {
    await ip(['link', 'add', this.hostIf, 'netns', this.hostNetns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.guestNetns, 'address', this.options.guestMac]);
  }

  /** The host end up: on the shared bridge, or holding the host's address in the guest's own host namespace. */
  private async hostEndUp(): Promise<void> {
    const host = { netns: this.hostNetns };
    if (this.options.bridge) await ip(['link', 'set', this.hostIf, 'master', this.options.bridge.name], host);
    else await ip(['addr', 'add', `${this.options.hostAddress}/${this.options.prefixLength}`, 'dev', this.hostIf], host);
    await ip(['link', 'set', this.hostIf, 'up'], host);
  }
}
