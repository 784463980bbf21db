import type { ObservationOf, ClockStamp } from '../../contract/observation.js';
import { formatMac } from '../link/decode-link.js';

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
const AF_INET = 2;
const AF_INET6 = 10;
/** The kernel's own table of local and broadcast addresses; it follows the addresses and says nothing new. */
export const RT_TABLE_LOCAL = 255;

export type RtAction = 'new' | 'del' | 'dump';

export function familyName(family: number | undefined): 'inet' | 'inet6' | null {
  return family === AF_INET ? 'inet' : family === AF_INET6 ? 'inet6' : null;
}

/** Textual IPv4 or compressed IPv6 (RFC 5952) address from its bytes. */
export function formatIp(bytes: Uint8Array | undefined): string | null {
  if (!bytes) return null;
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) return null;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength && j - i > 1) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function lower(value: unknown): string {
  return typeof value === 'string' ? value.toLowerCase() : String(value ?? 'unknown');
}

export interface RawAddressMessage {
  data: { family?: number; prefixlen?: number; scope?: number; index?: number };
  attrs: { address?: Uint8Array; local?: Uint8Array };
}

export function decodeAddress(action: RtAction, m: RawAddressMessage, at: ClockStamp, reconciled = false): ObservationOf<'address'> | null {
  const family = familyName(m.data.family);
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
  const address = formatIp(m.attrs.local ?? m.attrs.address);
  if (!family || !address) return null;
  return {
    kind: 'address', action, reconciled, ifindex: m.data.index ?? 0, family, address,
    prefixLength: m.data.prefixlen ?? 0, scope: m.data.scope ?? 0, at,
  };
}

export interface RawRouteMessage {
  data: { family?: number; dstLen?: number; table?: number; protocol?: unknown; scope?: unknown; type?: unknown };
  attrs: { dst?: Uint8Array; gateway?: Uint8Array; oif?: number; table?: number };
}

export function decodeRoute(action: RtAction, m: RawRouteMessage, at: ClockStamp, reconciled = false): ObservationOf<'route'> | null {
  const family = familyName(m.data.family);
  if (!family) return null;
  const table = m.attrs.table ?? m.data.table ?? 0;
  const dst = formatIp(m.attrs.dst);
  return {
    kind: 'route', action, reconciled, family, table,
    destination: dst ? `${dst}/${m.data.dstLen ?? 0}` : 'default',
    gateway: formatIp(m.attrs.gateway),
    oif: m.attrs.oif ?? null,
    protocol: lower(m.data.protocol), scope: lower(m.data.scope), type: lower(m.data.type), at,
  };
}

export interface RawNeighbourMessage {
  data: { family?: number; ifindex?: number; state?: Record<string, unknown> };
  attrs: { dst?: Uint8Array; lladdr?: Uint8Array };
}

export function decodeNeighbour(action: RtAction, m: RawNeighbourMessage, at: ClockStamp): ObservationOf<'neighbour'> | null {
  const family = familyName(m.data.family);
  const address = formatIp(m.attrs.dst);
  if (!family || !address) return null;
  const state = Object.keys(m.data.state ?? {}).filter((k) => k !== '__unknown').map((k) => k.toLowerCase());
  return { kind: 'neighbour', action, ifindex: m.data.ifindex ?? 0, address, lladdr: formatMac(m.attrs.lladdr), state, at };
}

/** Identity of an address or route, for keeping state and noticing what vanished. */
export function addressKey(a: ObservationOf<'address'>): string {
  return `${a.ifindex} ${a.family} ${a.address}/${a.prefixLength}`;
}

export function routeKey(r: ObservationOf<'route'>): string {
  return `${r.family} ${r.table} ${r.destination} via ${r.gateway ?? '-'} dev ${r.oif ?? '-'} ${r.type}`;
}
