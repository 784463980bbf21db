/**
 * The vocabulary every probe speaks. An observation is a fact the guest could see, stamped with the guest's own
 * clocks at the moment the agent learned it. Probes only observe; deciding what a set of observations means is the
 * episode engine's job, and nothing here changes the system.
 */

/** Guest clocks at one instant, all in milliseconds. */
export interface ClockStamp {
  /** CLOCK_REALTIME, ms since the epoch (Date.now()). */
  realtimeMs: number;
  /** CLOCK_MONOTONIC, ms since an arbitrary point (process.hrtime). */
  monotonicMs: number;
}

/** What `IFLA_EVENT` says: why the kernel sent a link notification that changed nothing in the link itself. */
export type LinkEventName =
  | 'none'
  | 'reboot'
  | 'features'
  | 'bonding-failover'
  | 'notify-peers'
  | 'igmp-resend'
  | 'bonding-options'
  | `unknown-${number}`;

/** A network interface as rtnetlink describes it in one RTM_NEWLINK / RTM_DELLINK message. */
export interface LinkState {
  ifindex: number;
  name: string;
  /** Lower-case colon-separated MAC, or null for interfaces without one (lo has 00:00:..., tun has none). */
  mac: string | null;
  mtu: number | null;
  /** IFF_UP: the administrator's wish. */
  adminUp: boolean;
  /** IFF_LOWER_UP: the driver's view of the carrier. */
  lowerUp: boolean;
  /** IFF_RUNNING: RFC 2863 operational up. */
  running: boolean;
  /** IFLA_OPERSTATE, as the kernel's RFC 2863 name. */
  operstate: string;
  /** IFLA_CARRIER: 1, 0, or null when the kernel did not send it. */
  carrier: number | null;
  /**
   * IFLA_CARRIER_CHANGES and its UP/DOWN halves. Xen netfront hides its carrier drop from netlink entirely; these
   * counters rising by two are the only trace of it (lab notes, xen).
   */
  carrierChanges: number | null;
  carrierUpCount: number | null;
  carrierDownCount: number | null;
}

export interface LinkObservation {
  kind: 'link';
  /** RTM_NEWLINK or RTM_DELLINK; `dump` for the initial state read at start. */
  action: 'new' | 'del' | 'dump';
  link: LinkState;
  /** IFLA_EVENT, when present. A migration's announce shows as `notify-peers` then `igmp-resend`. */
  event: LinkEventName | null;
  at: ClockStamp;
}

export interface ClockSampleObservation {
  kind: 'clock';
  /** The three clocks read together. `boottimeMs` comes from /proc/uptime and has 10 ms resolution. */
  realtimeMs: number;
  monotonicMs: number;
  boottimeMs: number;
  /** realtime − monotonic: constant unless the realtime clock was stepped or slewed. */
  realtimeMinusMonotonicMs: number;
  /** boottime − monotonic: rises only while the guest was suspended (Xen save/restore shows it). */
  boottimeMinusMonotonicMs: number;
  /**
   * How long the read of the three took (monotonic before to after): how far off each difference above can be. A busy
   * (nested, emulated) guest can be held up mid-read; older agents did not send it.
   */
  readSpreadMs?: number;
  at: ClockStamp;
}

/** Which firewall a ruleset came from. iptables-nft rules live in nf_tables too, so they also appear under nftables. */
export type FirewallBackend = 'nftables' | 'iptables-nft' | 'iptables-legacy';

/** An nft rule that matches an interface by index (`iif`/`oif`) whose index no longer names the interface it was written for. */
export interface StaleInterfaceRef {
  table: string;
  chain: string;
  handle: number;
  key: 'iif' | 'oif';
  /** The interface name the rule matched when flinch first saw it, if it saw it then. */
  writtenFor: string | null;
  /** What the rule says now: an index with no interface, or another interface's name. */
  now: string;
}

export interface FirewallObservation {
  kind: 'firewall';
  backend: FirewallBackend;
  /** iptables only: which of iptables (ipv4) and ip6tables (ipv6) the ruleset came from. */
  family?: 'ipv4' | 'ipv6';
  /** The ruleset's hash, stable across reads: handles and counters are left out. */
  hash: string;
  previousHash: string | null;
  rules: number;
  /** Rules that appeared and vanished since the previous reading, as canonical one-line keys. */
  added: string[];
  removed: string[];
  /** flinch's canary chains: all there, some gone (a wholesale flush), or none installed. */
  canary: 'present' | 'missing' | 'not-installed';
  staleInterfaceRefs: StaleInterfaceRef[];
  /** What prompted the reading: a netfilter netlink event, a poll, or the start. */
  trigger: 'start' | 'event' | 'poll';
  /**
   * nf_tables only: the last transaction committed before this reading, with the committing process as the kernel
   * names it (NFTA_GEN_PROC_PID / NFTA_GEN_PROC_NAME): who flushed or changed the ruleset.
   */
  committedBy?: NftCommit;
  at: ClockStamp;
}

export interface NftCommit {
  generation: number;
  pid: number;
  process: string;
}

export interface AddressObservation {
  kind: 'address';
  action: 'new' | 'del' | 'dump';
  /** True when the kernel removed it without a message and flinch found out by re-reading (after a link went away). */
  reconciled: boolean;
  ifindex: number;
  family: 'inet' | 'inet6';
  address: string;
  prefixLength: number;
  /** RT_SCOPE_*: 0 universe (global), 253 link, 254 host. */
  scope: number;
  at: ClockStamp;
}

export interface RouteObservation {
  kind: 'route';
  action: 'new' | 'del' | 'dump';
  reconciled: boolean;
  family: 'inet' | 'inet6';
  table: number;
  /** "default" or CIDR. */
  destination: string;
  gateway: string | null;
  oif: number | null;
  /** rtnetlink's names, lower-cased: protocol "kernel"/"boot"/"static"/"dhcp"..., scope "universe"/"link"/"host", type "unicast"... */
  protocol: string;
  scope: string;
  type: string;
  at: ClockStamp;
}

export interface NeighbourObservation {
  kind: 'neighbour';
  action: 'new' | 'del' | 'dump';
  ifindex: number;
  address: string;
  lladdr: string | null;
  /** NUD_* state names, e.g. ['reachable'] or ['failed']. */
  state: string[];
  at: ClockStamp;
}

/** One record from /dev/kmsg, with what flinch recognised in it. */
export interface KernelLogObservation {
  kind: 'kmsg';
  seq: number;
  /** Kernel timestamp (CLOCK_MONOTONIC at printk), ms. */
  kernelTimeMs: number;
  priority: number;
  facility: number;
  message: string;
  /** The raw record, as read. */
  raw: string;
  /** suspend-resume, netfront, netback, xen-manage, pm; empty when nothing matched. */
  tags: string[];
  /** Records lost to a ring-buffer overrun just before this one (the kernel's EPIPE). */
  lostBefore: number;
  /** True for records that were already in the buffer when the agent started. */
  replay: boolean;
  at: ClockStamp;
}

export interface XenObservation {
  kind: 'xen';
  /** What changed: the domid, a watched xenstore node, or a vif's state. */
  change: 'domid' | 'shutdown-request' | 'vif-state' | 'watch';
  path: string;
  value: string | null;
  previous: string | null;
  at: ClockStamp;
}

/**
 * The guest lost time it could measure: its monotonic clock kept running while it did not (a descheduled vCPU, host
 * contention), seen as a late wake-up, as steal time, or both. A pause in which every guest clock stood still
 * (KVM/TCG stop, migration) is invisible from inside; the host offset shows that one.
 */
export interface PauseObservation {
  kind: 'pause';
  /** How much later than planned the detector woke up, ms (0 when only steal showed it). */
  lateByMs: number;
  /** Steal time accrued over the same interval, ms (/proc/stat, 10 ms ticks). */
  stealMs: number;
  at: ClockStamp;
}

/** The guest's CLOCK_REALTIME against the host's, from the collector's time probes (NTP arithmetic). */
export interface HostOffsetObservation {
  kind: 'host-offset';
  /** guest − host, ms: negative when the guest is behind. */
  offsetMs: number;
  rttMs: number;
  /** Change since the last reported offset: a migration's downtime shows here as a negative step. */
  changeMs: number | null;
  /** Set when the change is flinch's own doing (its safety net stepped the clock back): no event of the guest's. */
  cause?: 'flinch-clock-heal';
  at: ClockStamp;
}

/** The agent's own link to its collector: a reset during an episode is something the guest's applications see too. */
export interface ConnectionObservation {
  kind: 'connection';
  event: 'reset' | 'closed' | 'connected';
  detail: string;
  at: ClockStamp;
}

export interface ProbeStatusObservation {
  kind: 'probe-status';
  probe: string;
  status: 'running' | 'unavailable' | 'failed';
  reason?: string;
  at: ClockStamp;
}

/**
 * What the agent's safety net did, or saw and chose not to touch, as it happened. Reports carry the actions of their
 * episode; this carries every one, so a fleet also sees a change left alone outside any episode
 * (changed-outside-migration) and counts it on both /metrics endpoints.
 */
export interface SafetyNetObservation {
  kind: 'safety-net';
  what: string;
  target: string;
  /** One of the report schema's REMEDIATION_RESULTS (probes do not import the agent). */
  result: string;
  why: string;
  error?: string;
  at: ClockStamp;
}

export type Observation =
  | LinkObservation
  | ClockSampleObservation
  | FirewallObservation
  | AddressObservation
  | RouteObservation
  | NeighbourObservation
  | KernelLogObservation
  | XenObservation
  | PauseObservation
  | HostOffsetObservation
  | ConnectionObservation
  | ProbeStatusObservation
  | SafetyNetObservation;
