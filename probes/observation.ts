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
  at: ClockStamp;
}

export interface ProbeStatusObservation {
  kind: 'probe-status';
  probe: string;
  status: 'running' | 'unavailable' | 'failed';
  reason?: string;
  at: ClockStamp;
}

export type Observation = LinkObservation | ClockSampleObservation | ProbeStatusObservation;
