/**
 * The vocabulary every probe speaks. An observation is a fact the guest could see, stamped with the guest's own
 * clocks at the moment the agent learned it. Probes only observe; deciding what a set of observations means is the
 * episode engine's job, and nothing here changes the system.
 */

import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { compiledValidator } from './compiled-validator.js';
import * as compiled from './compiled-validators.js';

/*
 * Each observation is a TypeBox schema, so that its TypeScript type and the JSON Schema the collector checks it against
 * are one definition. Free text and lists are bounded generously: the frame's size limit is the real bound, and a
 * bound an honest agent could exceed would turn its own observation into a reason to disconnect it.
 */
const Text = (maxLength = 65536) => Type.String({ maxLength });
const Name = Type.String({ maxLength: 256 });
const Count = Type.Integer({ minimum: 0 });
const closed = <T extends Record<string, TSchema>>(properties: T, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Action = Type.Union([Type.Literal('new'), Type.Literal('del'), Type.Literal('dump')]);
const Family = Type.Union([Type.Literal('inet'), Type.Literal('inet6')]);

/** Guest clocks at one instant, all in milliseconds. */
export const ClockStampSchema = closed({
  /** CLOCK_REALTIME, ms since the epoch (Date.now()). */
  realtimeMs: Type.Number(),
  /** CLOCK_MONOTONIC, ms since an arbitrary point (process.hrtime). */
  monotonicMs: Type.Number(),
});
export type ClockStamp = Static<typeof ClockStampSchema>;

/** What `IFLA_EVENT` says: why the kernel sent a link notification that changed nothing in the link itself. */
export const LinkEventNameSchema = Type.Union([
  Type.Union([Type.Literal('none'), Type.Literal('reboot'), Type.Literal('features'), Type.Literal('bonding-failover'), Type.Literal('notify-peers'), Type.Literal('igmp-resend'), Type.Literal('bonding-options')]),
  Type.TemplateLiteral('unknown-${number}'),
]);
export type LinkEventName = Static<typeof LinkEventNameSchema>;

/** A network interface as rtnetlink describes it in one RTM_NEWLINK / RTM_DELLINK message. */
export const LinkStateSchema = closed({
  ifindex: Type.Integer(),
  name: Name,
  /** Lower-case colon-separated MAC, or null for interfaces without one (lo has 00:00:..., tun has none). */
  mac: nullable(Name),
  mtu: nullable(Type.Number()),
  /** IFF_UP: the administrator's wish. */
  adminUp: Type.Boolean(),
  /** IFF_LOWER_UP: the driver's view of the carrier. */
  lowerUp: Type.Boolean(),
  /** IFF_RUNNING: RFC 2863 operational up. */
  running: Type.Boolean(),
  /** IFLA_OPERSTATE, as the kernel's RFC 2863 name. */
  operstate: Name,
  /** IFLA_CARRIER: 1, 0, or null when the kernel did not send it. */
  carrier: nullable(Type.Number()),
  /**
   * IFLA_CARRIER_CHANGES and its UP/DOWN halves. Xen netfront hides its carrier drop from netlink entirely; these
   * counters rising by two are the only trace of it (lab notes, xen).
   */
  carrierChanges: nullable(Type.Number()),
  carrierUpCount: nullable(Type.Number()),
  carrierDownCount: nullable(Type.Number()),
});
export type LinkState = Static<typeof LinkStateSchema>;

export const LinkObservationSchema = closed({
  kind: Type.Literal('link'),
  /** RTM_NEWLINK or RTM_DELLINK; `dump` for the initial state read at start. */
  action: Action,
  link: LinkStateSchema,
  /** IFLA_EVENT, when present. A migration's announce shows as `notify-peers` then `igmp-resend`. */
  event: nullable(LinkEventNameSchema),
  at: ClockStampSchema,
});

export const ClockSampleObservationSchema = closed({
  kind: Type.Literal('clock'),
  /** The three clocks read together. `boottimeMs` comes from /proc/uptime and has 10 ms resolution. */
  realtimeMs: Type.Number(),
  monotonicMs: Type.Number(),
  boottimeMs: Type.Number(),
  /** realtime − monotonic: constant unless the realtime clock was stepped or slewed. */
  realtimeMinusMonotonicMs: Type.Number(),
  /** boottime − monotonic: rises only while the guest was suspended (Xen save/restore shows it). */
  boottimeMinusMonotonicMs: Type.Number(),
  /**
   * How long the read of the three took (monotonic before to after): how far off each difference above can be. A busy
   * (nested, emulated) guest can be held up mid-read; older agents did not send it.
   */
  readSpreadMs: Type.Optional(Type.Number()),
  at: ClockStampSchema,
});

/** Which firewall a ruleset came from. iptables-nft rules live in nf_tables too, so they also appear under nftables. */
export const FirewallBackendSchema = Type.Union([Type.Literal('nftables'), Type.Literal('iptables-nft'), Type.Literal('iptables-legacy')]);
export type FirewallBackend = Static<typeof FirewallBackendSchema>;

/** An nft rule that matches an interface by index (`iif`/`oif`) whose index no longer names the interface it was written for. */
export const StaleInterfaceRefSchema = closed({
  table: Name,
  chain: Name,
  handle: Type.Integer(),
  key: Type.Union([Type.Literal('iif'), Type.Literal('oif')]),
  /** The interface name the rule matched when flinch first saw it, if it saw it then. */
  writtenFor: nullable(Name),
  /** What the rule says now: an index with no interface, or another interface's name. */
  now: Name,
});
export type StaleInterfaceRef = Static<typeof StaleInterfaceRefSchema>;

export const NftCommitSchema = closed({ generation: Type.Integer(), pid: Type.Integer(), process: Name });
export type NftCommit = Static<typeof NftCommitSchema>;

export const FirewallObservationSchema = closed({
  kind: Type.Literal('firewall'),
  backend: FirewallBackendSchema,
  /** iptables only: which of iptables (ipv4) and ip6tables (ipv6) the ruleset came from. */
  family: Type.Optional(Type.Union([Type.Literal('ipv4'), Type.Literal('ipv6')])),
  /** The ruleset's hash, stable across reads: handles and counters are left out. */
  hash: Name,
  previousHash: nullable(Name),
  rules: Count,
  /** Rules that appeared and vanished since the previous reading, as canonical one-line keys. */
  added: Type.Array(Text(), { maxItems: 100000 }),
  removed: Type.Array(Text(), { maxItems: 100000 }),
  /** flinch's canary chains: all there, some gone (a wholesale flush), or none installed. */
  canary: Type.Union([Type.Literal('present'), Type.Literal('missing'), Type.Literal('not-installed')]),
  staleInterfaceRefs: Type.Array(StaleInterfaceRefSchema, { maxItems: 100000 }),
  /** What prompted the reading: a netfilter netlink event, a poll, or the start. */
  trigger: Type.Union([Type.Literal('start'), Type.Literal('event'), Type.Literal('poll')]),
  /**
   * nf_tables only: the last transaction committed before this reading, with the committing process as the kernel
   * names it (NFTA_GEN_PROC_PID / NFTA_GEN_PROC_NAME): who flushed or changed the ruleset.
   */
  committedBy: Type.Optional(NftCommitSchema),
  at: ClockStampSchema,
});

export const AddressObservationSchema = closed({
  kind: Type.Literal('address'),
  action: Action,
  /** True when the kernel removed it without a message and flinch found out by re-reading (after a link went away). */
  reconciled: Type.Boolean(),
  ifindex: Type.Integer(),
  family: Family,
  address: Name,
  prefixLength: Type.Integer({ minimum: 0, maximum: 128 }),
  /** RT_SCOPE_*: 0 universe (global), 253 link, 254 host. */
  scope: Type.Integer(),
  at: ClockStampSchema,
});

export const RouteObservationSchema = closed({
  kind: Type.Literal('route'),
  action: Action,
  reconciled: Type.Boolean(),
  family: Family,
  table: Type.Integer(),
  /** "default" or CIDR. */
  destination: Name,
  gateway: nullable(Name),
  oif: nullable(Type.Integer()),
  /** rtnetlink's names, lower-cased: protocol "kernel"/"boot"/"static"/"dhcp"..., scope "universe"/"link"/"host", type "unicast"... */
  protocol: Name,
  scope: Name,
  type: Name,
  at: ClockStampSchema,
});

export const NeighbourObservationSchema = closed({
  kind: Type.Literal('neighbour'),
  action: Action,
  ifindex: Type.Integer(),
  address: Name,
  lladdr: nullable(Name),
  /** NUD_* state names, e.g. ['reachable'] or ['failed']. */
  state: Type.Array(Name, { maxItems: 16 }),
  at: ClockStampSchema,
});

/** One record from /dev/kmsg, with what flinch recognised in it. */
export const KernelLogObservationSchema = closed({
  kind: Type.Literal('kmsg'),
  seq: Type.Number(),
  /** Kernel timestamp (CLOCK_MONOTONIC at printk), ms. */
  kernelTimeMs: Type.Number(),
  priority: Type.Integer(),
  facility: Type.Integer(),
  message: Text(),
  /** The raw record, as read. */
  raw: Text(),
  /** suspend-resume, netfront, netback, xen-manage, pm; empty when nothing matched. */
  tags: Type.Array(Name, { maxItems: 64 }),
  /** Records lost to a ring-buffer overrun just before this one (the kernel's EPIPE). */
  lostBefore: Type.Number({ minimum: 0 }),
  /** True for records that were already in the buffer when the agent started. */
  replay: Type.Boolean(),
  at: ClockStampSchema,
});

export const XenObservationSchema = closed({
  kind: Type.Literal('xen'),
  /** What changed: the domid, a watched xenstore node, or a vif's state. */
  change: Type.Union([Type.Literal('domid'), Type.Literal('shutdown-request'), Type.Literal('vif-state'), Type.Literal('watch')]),
  path: Text(4096),
  value: nullable(Text()),
  previous: nullable(Text()),
  at: ClockStampSchema,
});

/**
 * The guest lost time it could measure: its monotonic clock kept running while it did not (a descheduled vCPU, host
 * contention), seen as a late wake-up, as steal time, or both. A pause in which every guest clock stood still
 * (KVM/TCG stop, migration) is invisible from inside; the host offset shows that one.
 */
export const PauseObservationSchema = closed({
  kind: Type.Literal('pause'),
  /** How much later than planned the detector woke up, ms (0 when only steal showed it). */
  lateByMs: Type.Number(),
  /** Steal time accrued over the same interval, ms (/proc/stat, 10 ms ticks). */
  stealMs: Type.Number(),
  at: ClockStampSchema,
});

/** The guest's CLOCK_REALTIME against the host's, from the collector's time probes (NTP arithmetic). */
export const HostOffsetObservationSchema = closed({
  kind: Type.Literal('host-offset'),
  /** guest − host, ms: negative when the guest is behind. */
  offsetMs: Type.Number(),
  rttMs: Type.Number(),
  /** Change since the last reported offset: a migration's downtime shows here as a negative step. */
  changeMs: nullable(Type.Number()),
  /** Set when the change is flinch's own doing (its safety net stepped the clock back): no event of the guest's. */
  cause: Type.Optional(Type.Literal('flinch-clock-heal')),
  at: ClockStampSchema,
});

/** The agent's own link to its collector: a reset during an episode is something the guest's applications see too. */
export const ConnectionObservationSchema = closed({
  kind: Type.Literal('connection'),
  event: Type.Union([Type.Literal('reset'), Type.Literal('closed'), Type.Literal('connected')]),
  detail: Text(),
  at: ClockStampSchema,
});

export const ProbeStatusObservationSchema = closed({
  kind: Type.Literal('probe-status'),
  probe: Name,
  status: Type.Union([Type.Literal('running'), Type.Literal('unavailable'), Type.Literal('failed')]),
  reason: Type.Optional(Text()),
  at: ClockStampSchema,
});

/**
 * What the agent's safety net did, or saw and chose not to touch, as it happened. Reports carry the actions of their
 * episode; this carries every one, so a fleet also sees a change left alone outside any episode
 * (changed-outside-migration) and counts it on both /metrics endpoints.
 */
export const SafetyNetObservationSchema = closed({
  kind: Type.Literal('safety-net'),
  what: Name,
  target: Text(),
  /** One of the report schema's REMEDIATION_RESULTS. */
  result: Name,
  why: Text(),
  error: Type.Optional(Text()),
  at: ClockStampSchema,
});


const OBSERVATION_SCHEMAS = [
  LinkObservationSchema,
  ClockSampleObservationSchema,
  FirewallObservationSchema,
  AddressObservationSchema,
  RouteObservationSchema,
  NeighbourObservationSchema,
  KernelLogObservationSchema,
  XenObservationSchema,
  PauseObservationSchema,
  HostOffsetObservationSchema,
  ConnectionObservationSchema,
  ProbeStatusObservationSchema,
  SafetyNetObservationSchema,
] as const;

export type Observation = Static<(typeof OBSERVATION_SCHEMAS)[number]>;
export type ObservationKind = Observation['kind'];
/** One kind's observation, for code that handles that kind. */
export type ObservationOf<K extends ObservationKind> = Extract<Observation, { kind: K }>;
export const OBSERVATION_KINDS = OBSERVATION_SCHEMAS.map((schema) => schema.properties.kind.const) as readonly ObservationKind[];

/**
 * Any observation, checked in full: `kind` picks the one branch to check (Ajv's discriminator), so an error names
 * that branch's field rather than thirteen branches' worth of mismatches.
 */
/** The observation's schema, by the name consumers see (the `schema` of a --json line). */
export const OBSERVATION_SCHEMA_ID = 'flinch.observation/v1';
/**
 * The same schema as Ajv knows it: an absolute URI, because a bare name would be resolved against the $id of the
 * schema that refers to it (flinch.report/v1's observations would be looked for under flinch.report/).
 */
const OBSERVATION_SCHEMA_URI = 'urn:flinch:observation:v1';

export const ObservationSchema = Type.Unsafe<Observation>({
  $id: OBSERVATION_SCHEMA_URI,
  type: 'object',
  discriminator: { propertyName: 'kind' },
  oneOf: [...OBSERVATION_SCHEMAS],
});

/** Where a report or a message holds an observation: a reference to the union, compiled once (generate-validators.ts). */
export const ObservationRef = Type.Unsafe<Observation>({ $ref: OBSERVATION_SCHEMA_URI });

/** Why a value is not an observation (the first violation, by JSON pointer), or null when it is one. */
export function observationError(value: unknown): string | null {
  const validate = compiledValidator<Observation>(compiled.validateObservation);
  if (validate(value)) return null;
  const error = validate.errors?.[0];
  const kind = (value as { kind?: unknown } | null)?.kind;
  const which = typeof kind === 'string' ? JSON.stringify(kind.slice(0, 32)) : 'an';
  return `${which} observation${error?.instancePath ?? ''} ${error?.message ?? 'is invalid'}`;
}
