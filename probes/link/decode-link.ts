import type { LinkEventName, ObservationOf, LinkState, ClockStamp } from '../../contract/observation.js';

/** rtnetlink message types (linux/rtnetlink.h). The netlink package's parsed messages drop them, so we keep the raw one. */
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;

/** RFC 2863 operational states, indexed by IFLA_OPERSTATE (linux/if.h IF_OPER_*). */
const OPERSTATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'] as const;

/** IFLA_EVENT values (linux/if_link.h IFLA_EVENT_*). */
const LINK_EVENTS: readonly LinkEventName[] = [
  'none',
  'reboot',
  'features',
  'bonding-failover',
  'notify-peers',
  'igmp-resend',
  'bonding-options',
];

/** The subset of the netlink package's LinkMessage that decoding reads; declared here so tests can build one. */
export interface RawLinkMessage {
  data: { index?: number; flags?: { up?: true; running?: true; lowerUp?: true } };
  attrs: {
    ifname?: string;
    address?: Uint8Array;
    mtu?: number;
    operstate?: number;
    carrier?: number;
    carrierChanges?: number;
    carrierUpCount?: number;
    carrierDownCount?: number;
    event?: Uint8Array;
  };
}

export function formatMac(bytes: Uint8Array | undefined): string | null {
  if (!bytes || bytes.length === 0) return null;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export function operstateName(value: number | undefined): string {
  if (value === undefined) return 'unknown';
  return OPERSTATES[value] ?? `unknown-${value}`;
}

/** IFLA_EVENT is a native-endian u32; every Linux target flinch runs on is little-endian. */
export function decodeLinkEvent(raw: Uint8Array | undefined): LinkEventName | null {
  if (!raw) return null;
  if (raw.length < 4) return `unknown-${raw.length === 0 ? -1 : raw[0]!}` as LinkEventName;
  const value = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).readUInt32LE(0);
  return LINK_EVENTS[value] ?? (`unknown-${value}` as LinkEventName);
}

export function decodeLinkState(message: RawLinkMessage): LinkState {
  const { data, attrs } = message;
  const flags = data.flags ?? {};
  return {
    ifindex: data.index ?? 0,
    name: attrs.ifname ?? '',
    mac: formatMac(attrs.address),
    mtu: attrs.mtu ?? null,
    adminUp: flags.up === true,
    lowerUp: flags.lowerUp === true,
    running: flags.running === true,
    operstate: operstateName(attrs.operstate),
    carrier: attrs.carrier ?? null,
    carrierChanges: attrs.carrierChanges ?? null,
    carrierUpCount: attrs.carrierUpCount ?? null,
    carrierDownCount: attrs.carrierDownCount ?? null,
  };
}

/**
 * Turns one rtnetlink link message into an observation. `rawType` must be the nlmsg_type read from the socket:
 * the parsed message alone cannot tell an interface that appeared from one that vanished.
 */
export function decodeLinkMessage(
  rawType: number,
  message: RawLinkMessage,
  at: ClockStamp,
  fromDump = false,
): ObservationOf<'link'> {
  let action: ObservationOf<'link'>['action'];
  if (fromDump) action = 'dump';
  else if (rawType === RTM_NEWLINK) action = 'new';
  else if (rawType === RTM_DELLINK) action = 'del';
  else throw new Error(`not a link message: nlmsg_type ${rawType}`);
  return { kind: 'link', action, link: decodeLinkState(message), event: decodeLinkEvent(message.attrs.event), at };
}
