import type { Probe } from './probe.js';
import { RtnetlinkLinkProbe } from './link/rtnetlink-link-probe.js';
import { ClockProbe, DEFAULT_CLOCK_PROBE_OPTIONS, type ClockProbeOptions } from './clock/clock-probe.js';
import { NftablesProbe } from './firewall/nftables-probe.js';
import { IptablesProbe } from './firewall/iptables-probe.js';
import { AddressingProbe } from './addressing/addressing-probe.js';
import { KmsgProbe } from './kmsg/kmsg-probe.js';
import { XenProbe } from './xen/xen-probe.js';

/** Settings a probe may read; each takes what concerns it. */
export interface ProbeSettings {
  /** iptables-legacy has no change events and is polled this often. */
  legacyPollMs: number;
  clock: ClockProbeOptions;
}

export const DEFAULT_PROBE_SETTINGS: ProbeSettings = {
  legacyPollMs: 1000,
  clock: DEFAULT_CLOCK_PROBE_OPTIONS,
};

interface ProbeEntry {
  create(settings: ProbeSettings): Probe;
  enabledByDefault: boolean;
}

/**
 * Every probe flinch knows, by name (the node_exporter collector model). The agent core iterates this table and never
 * names a probe itself, so adding one is its module plus one entry here.
 */
export const PROBES: Readonly<Record<string, ProbeEntry>> = {
  link: { create: () => new RtnetlinkLinkProbe(), enabledByDefault: true },
  addressing: { create: () => new AddressingProbe(), enabledByDefault: true },
  nftables: { create: (s) => new NftablesProbe(), enabledByDefault: true },
  iptables: {
    create: (s) => new IptablesProbe({ legacyPollMs: s.legacyPollMs }),
    enabledByDefault: true,
  },
  clock: { create: (s) => new ClockProbe(s.clock), enabledByDefault: true },
  kmsg: { create: () => new KmsgProbe(), enabledByDefault: true },
  xen: { create: () => new XenProbe(), enabledByDefault: true },
};

export function defaultProbeNames(): string[] {
  return Object.entries(PROBES).filter(([, entry]) => entry.enabledByDefault).map(([name]) => name);
}

export function createProbes(names: readonly string[] = defaultProbeNames(), settings: ProbeSettings = DEFAULT_PROBE_SETTINGS): Probe[] {
  return names.map((name) => {
    const entry = PROBES[name];
    if (!entry) throw new Error(`unknown probe "${name}" (known: ${Object.keys(PROBES).join(', ')})`);
    return entry.create(settings);
  });
}
