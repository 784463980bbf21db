import { MillisecondsSchema, numberFromText, type SettingDeclaration } from '../contract/setting.js';
import type { Probe } from './probe.js';
import { RtnetlinkLinkProbe } from './link/rtnetlink-link-probe.js';
import { ClockProbe, DEFAULT_CLOCK_PROBE_OPTIONS, type ClockProbeOptions } from './clock/clock-probe.js';
import { NftablesProbe } from './firewall/nftables-probe.js';
import { DEFAULT_IPTABLES_PROBE_OPTIONS, IptablesProbe } from './firewall/iptables-probe.js';
import { AddressingProbe } from './addressing/addressing-probe.js';
import { DEFAULT_KMSG_PROBE_OPTIONS, KmsgProbe } from './kmsg/kmsg-probe.js';
import { XenProbe } from './xen/xen-probe.js';

/**
 * What probes are created with: the values of their own declared settings, by key, and the clock probe's options
 * (whose pause threshold the agent raises to its --timing-noise).
 */
export interface ProbeSettings {
  values: Readonly<Record<string, unknown>>;
  clock: ClockProbeOptions;
}

interface ProbeEntry {
  create(settings: ProbeSettings): Probe;
  enabledByDefault: boolean;
  /** The probe's own settings: the agent's command line and agent.yaml pick them up from here. */
  settings?: readonly SettingDeclaration[];
}

const LEGACY_POLL: SettingDeclaration = {
  key: 'legacy-poll', flags: '--legacy-poll <ms>',
  description: 'how often iptables-legacy, which has no change events, is read for two minutes after anything happened',
  schema: MillisecondsSchema, fromText: numberFromText, defaultValue: DEFAULT_IPTABLES_PROBE_OPTIONS.legacyPollMs,
};

const LEGACY_IDLE_POLL: SettingDeclaration = {
  key: 'legacy-idle-poll', flags: '--legacy-idle-poll <ms>',
  description: 'how often iptables-legacy is read when nothing has happened for two minutes',
  schema: MillisecondsSchema, fromText: numberFromText, defaultValue: DEFAULT_IPTABLES_PROBE_OPTIONS.legacyIdlePollMs,
};

const KMSG_POLL: SettingDeclaration = {
  key: 'kmsg-poll', flags: '--kmsg-poll <ms>', description: 'how often the kernel log (/dev/kmsg, which cannot be waited on from Node) is read',
  schema: MillisecondsSchema, fromText: numberFromText, defaultValue: DEFAULT_KMSG_PROBE_OPTIONS.pollMs,
};

function setting(settings: ProbeSettings, declaration: SettingDeclaration): number {
  return (settings.values[declaration.key] as number | undefined) ?? (declaration.defaultValue as number);
}

/**
 * Every probe flinch knows, by name (the node_exporter collector model). The agent core iterates this table and never
 * names a probe itself, so adding one is its module plus one entry here.
 */
export const PROBES: Readonly<Record<string, ProbeEntry>> = {
  link: { create: () => new RtnetlinkLinkProbe(), enabledByDefault: true },
  addressing: { create: () => new AddressingProbe(), enabledByDefault: true },
  nftables: { create: () => new NftablesProbe(), enabledByDefault: true },
  iptables: {
    create: (s) => new IptablesProbe({ legacyPollMs: setting(s, LEGACY_POLL), legacyIdlePollMs: setting(s, LEGACY_IDLE_POLL) }),
    enabledByDefault: true,
    settings: [LEGACY_POLL, LEGACY_IDLE_POLL],
  },
  clock: { create: (s) => new ClockProbe(s.clock), enabledByDefault: true },
  kmsg: { create: (s) => new KmsgProbe({ ...DEFAULT_KMSG_PROBE_OPTIONS, pollMs: setting(s, KMSG_POLL) }), enabledByDefault: true, settings: [KMSG_POLL] },
  xen: { create: () => new XenProbe(), enabledByDefault: true },
};

/** Every probe's own settings, each with its default: what a probe is created with when nothing else is said. */
export const PROBE_SETTINGS: readonly SettingDeclaration[] = Object.values(PROBES).flatMap((entry) => entry.settings ?? []);

export const DEFAULT_PROBE_SETTINGS: ProbeSettings = {
  values: Object.fromEntries(PROBE_SETTINGS.map((setting) => [setting.key, setting.defaultValue])),
  clock: DEFAULT_CLOCK_PROBE_OPTIONS,
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
