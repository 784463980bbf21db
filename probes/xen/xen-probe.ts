import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Observation, ObservationOf } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { openXenbusDevice, XenstoreClient } from './xenstore-client.js';

export interface XenProbeOptions {
  sysHypervisorType: string;
  xenbusDevices: readonly string[];
  sysXenDevices: string;
  /** Tests hand in a stream to an in-process fake xenstored instead of the device. */
  openXenbus?: () => Duplex;
}

export const DEFAULT_XEN_PROBE_OPTIONS: XenProbeOptions = {
  sysHypervisorType: '/sys/hypervisor/type',
  xenbusDevices: ['/dev/xen/xenbus', '/proc/xen/xenbus'],
  sysXenDevices: '/sys/bus/xen/devices',
};

export interface XenSnapshot {
  domid: string | null;
  /** Watched xenstore nodes and their last values. */
  nodes: Record<string, string | null>;
  /** /sys/bus/xen/devices: each device's readable attributes (devtype, nodename, state where the kernel has it). */
  devices: Record<string, Record<string, string>>;
}

const SHUTDOWN_NODE = 'control/shutdown';

/**
 * What Xen tells a guest about itself. The domid changes when a domain is restored or migrated (seeds 000, 001);
 * `control/shutdown` carries the toolstack's "suspend" request; the vif frontend and backend `state` nodes walk
 * through Closing/InitWait/Connected around a resume. The kernel re-registers every watch after a resume and
 * xenstored fires each once on registration, so a burst of watch events follows every migration.
 */
export class XenProbe implements Probe<XenSnapshot> {
  readonly name = 'xen';
  private client: XenstoreClient | null = null;
  private domid: string | null = null;
  private readonly nodes = new Map<string, string | null>();

  constructor(private readonly options: XenProbeOptions = DEFAULT_XEN_PROBE_OPTIONS) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    const hypervisor = readTrimmed(this.options.sysHypervisorType);
    if (hypervisor !== 'xen') throw new ProbeUnavailableError(this.name, 'not a Xen guest');
    const client = new XenstoreClient(this.openXenbus());
    this.client = client;
    const report = (change: ObservationOf<'xen'>['change'], nodePath: string, value: string | null, previous: string | null) =>
      emit({ kind: 'xen', change, path: nodePath, value, previous, at: stampNow() });

    this.domid = await client.read('domid');
    report('domid', 'domid', this.domid, null);

    client.on('error', (error) => emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() }));
    client.on('watch', ({ path: nodePath }) => {
      void this.onWatch(client, nodePath, report).catch((error: Error) =>
        emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() }),
      );
    });
    await this.watchNodes(client, [SHUTDOWN_NODE, ...(await this.vifNodes(client))]);
  }

  /** Each vif's own state node and its backend's: the backend's path names the domid, so it changes on a restore. */
  private async vifNodes(client: XenstoreClient): Promise<string[]> {
    const nodes: string[] = [];
    for (const vif of await client.directory('device/vif')) {
      nodes.push(`device/vif/${vif}/state`);
      const backend = await client.read(`device/vif/${vif}/backend`);
      if (backend) nodes.push(`${backend}/state`);
    }
    return nodes;
  }

  private async watchNodes(client: XenstoreClient, nodes: readonly string[]): Promise<void> {
    for (const node of nodes) {
      if (this.nodes.has(node)) continue;
      this.nodes.set(node, await client.read(node));
      await client.watch(node, `flinch:${node}`);
    }
  }

  async stop(): Promise<void> {
    this.client?.close();
    this.client = null;
  }

  async snapshot(): Promise<XenSnapshot> {
    return { domid: this.domid, nodes: Object.fromEntries(this.nodes), devices: readXenDevices(this.options.sysXenDevices) };
  }

  private openXenbus(): Duplex {
    if (this.options.openXenbus) return this.options.openXenbus();
    const device = this.options.xenbusDevices.find((d) => existsSync(d));
    if (!device) throw new ProbeUnavailableError(this.name, `no xenbus device (${this.options.xenbusDevices.join(', ')})`);
    try {
      return openXenbusDevice(device);
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot open ${device}: ${(error as Error).message}`);
    }
  }

  private async onWatch(
    client: XenstoreClient,
    nodePath: string,
    report: (change: ObservationOf<'xen'>['change'], nodePath: string, value: string | null, previous: string | null) => void,
  ): Promise<void> {
    // Any watch event may follow a resume in a new domain: the domid is read again every time.
    const domid = await client.read('domid');
    if (domid !== this.domid) {
      report('domid', 'domid', domid, this.domid);
      this.domid = domid;
      // The backends of the domain that was are gone; watch those of the one that is (absolute paths, new domid).
      const current = new Set([SHUTDOWN_NODE, ...(await this.vifNodes(client))]);
      for (const node of [...this.nodes.keys()]) {
        if (current.has(node) || !node.startsWith('/')) continue;
        this.nodes.delete(node);
        await client.unwatch(node, `flinch:${node}`).catch(() => undefined);
      }
      await this.watchNodes(client, [...current]);
    }
    const key = [...this.nodes.keys()].find((node) => nodePath === node || nodePath.endsWith(`/${node}`));
    if (!key) return;
    const value = await client.read(key);
    const previous = this.nodes.get(key) ?? null;
    if (value === previous) return;
    this.nodes.set(key, value);
    report(key === SHUTDOWN_NODE ? 'shutdown-request' : 'vif-state', key, value, previous);
  }
}

function readTrimmed(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

export function readXenDevices(root: string): Record<string, Record<string, string>> {
  const devices: Record<string, Record<string, string>> = {};
  if (!existsSync(root)) return devices;
  for (const device of readdirSync(root)) {
    const attributes: Record<string, string> = {};
    for (const attribute of ['devtype', 'nodename', 'state', 'modalias']) {
      const value = readTrimmed(path.join(root, device, attribute));
      if (value !== null) attributes[attribute] = value;
    }
    devices[device] = attributes;
  }
  return devices;
}
