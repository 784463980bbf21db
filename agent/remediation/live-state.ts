import { ipJson } from '../system/ip.js';
import { listRuleset, type NftJsonItem } from '../system/nft.js';
import { runCommand } from '../system/run-command.js';
import { iptablesAvailable, iptablesSave, type IpFamily, type IptablesVariant } from '../system/iptables.js';
import { findExecutable } from '../system/run-command.js';
import { normalizeIptablesSave, normalizeNftRuleset } from '../../probes/firewall/ruleset.js';

/** One interface's network state, keyed by MAC: after a replug the name may be the same but the ifindex is not. */
export interface InterfaceState {
  mac: string;
  name: string;
  mtu: number;
  adminUp: boolean;
  /** "192.0.2.10/24", "2001:db8::10/64": global-scope addresses only (link-local ones the kernel makes itself). */
  addresses: string[];
  routes: RouteState[];
}

export interface RouteState {
  family: 'inet' | 'inet6';
  /** "default" or CIDR, as `ip route` takes it. */
  destination: string;
  gateway: string | null;
}

/** One firewall table as a unit of restore: its text (what `nft -f` / iptables-restore takes) and its hash. */
export interface FirewallTableState {
  key: string;
  backend: 'nftables' | 'iptables-nft' | 'iptables-legacy';
  /** nft: "inet filter"; iptables: "filter". */
  table: string;
  family: string;
  text: string;
  hash: string;
}

export interface LiveState {
  interfaces: Record<string, InterfaceState>;
  firewall: Record<string, FirewallTableState>;
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  link_type?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

/** Routes the kernel makes and removes by itself along with addresses and links: not flinch's to restore. */
const KERNEL_MANAGED_PROTOCOLS = new Set(['kernel', 'ra', 'redirect']);

export async function captureInterfaces(): Promise<Record<string, InterfaceState>> {
  const [links, routes4, routes6] = await Promise.all([
    ipJson<IpAddrJson[]>(['addr', 'show']),
    ipJson<IpRouteJson[]>(['-4', 'route', 'show', 'table', 'main']),
    ipJson<IpRouteJson[]>(['-6', 'route', 'show', 'table', 'main']),
  ]);
  const routes = [...routes4.map((r) => ({ ...r, family: 'inet' as const })), ...routes6.map((r) => ({ ...r, family: 'inet6' as const }))];
  const interfaces: Record<string, InterfaceState> = {};
  for (const link of links) {
    if (!link.address || link.link_type !== 'ether' || link.address === '00:00:00:00:00:00') continue;
    interfaces[link.address] = {
      mac: link.address,
      name: link.ifname,
      mtu: link.mtu,
      adminUp: link.flags.includes('UP'),
      addresses: (link.addr_info ?? [])
        .filter((a) => a.scope === 'global')
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort(),
      routes: routes
        .filter((r) => r.dev === link.ifname && !KERNEL_MANAGED_PROTOCOLS.has(r.protocol ?? '') && (r.type ?? 'unicast') === 'unicast')
        .map((r) => ({ family: r.family, destination: r.dst, gateway: r.gateway ?? null }))
        .sort((a, b) => `${a.family}${a.destination}`.localeCompare(`${b.family}${b.destination}`)),
    };
  }
  return interfaces;
}

const IPTABLES_TABLE_NAMES = new Set(['filter', 'nat', 'mangle', 'raw', 'security']);

/** Splits iptables-save output into one restorable block per table. */
export function splitIptablesSave(text: string): Map<string, string> {
  const blocks = new Map<string, string>();
  let table: string | null = null;
  let lines: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      lines = [line];
    } else if (table) {
      lines.push(line);
      if (line.trim() === 'COMMIT') {
        blocks.set(table, `${lines.join('\n')}\n`);
        table = null;
      }
    }
  }
  return blocks;
}

async function captureIptables(variant: IptablesVariant, family: IpFamily, out: Record<string, FirewallTableState>): Promise<string[]> {
  if (!iptablesAvailable(variant, family)) return [];
  const backend = variant === 'nft' ? 'iptables-nft' : 'iptables-legacy';
  const blocks = splitIptablesSave(await iptablesSave(variant, family));
  for (const [table, text] of blocks) {
    const key = `${backend} ${family} ${table}`;
    const normalized = normalizeIptablesSave(backend, family, text);
    // The canary chain is part of what must come back, so it counts here (the probes leave it out of their hash).
    out[key] = { key, backend, table, family, text, hash: `${normalized.hash}${normalized.canaries.length ? '+canary' : ''}` };
  }
  return [...blocks.keys()];
}

/** nft tables, each with its own text (nft list table) and its hash; iptables-nft's tables are left to iptables. */
async function captureNft(out: Record<string, FirewallTableState>, iptablesNftTables: Map<string, string[]>): Promise<void> {
  if (!findExecutable('nft')) return;
  const items = await listRuleset();
  const tables = items.flatMap((i) => ('table' in i ? [i.table as { family: string; name: string }] : []));
  await Promise.all(tables.map(async ({ family, name }) => {
    const owner = family === 'ip' ? 'ipv4' : family === 'ip6' ? 'ipv6' : null;
    if (owner && IPTABLES_TABLE_NAMES.has(name) && iptablesNftTables.get(owner)?.includes(name)) return;
    let stdout: string;
    try {
      ({ stdout } = await runCommand('nft', ['list', 'table', family, name]));
    } catch (error) {
      // Listed a moment ago and gone now: flushed meanwhile (the very loss this capture is looking for), so absent.
      if (/No such file or directory/.test((error as Error).message)) return;
      throw error;
    }
    const key = `nftables ${family} ${name}`;
    out[key] = { key, backend: 'nftables', table: `${family} ${name}`, family, text: stdout, hash: nftTableHash(items, family, name) };
  }));
}

export function nftTableHash(items: readonly NftJsonItem[], family: string, name: string): string {
  const ofTable = items.filter((item) => {
    const body = Object.values(item)[0] as { family?: string; table?: string; name?: string } | undefined;
    if ('table' in item) return body?.family === family && body?.name === name;
    return body?.family === family && body?.table === name;
  });
  // The canary filter in normalisation would hide flinch's own tables; hash their presence explicitly.
  return `${normalizeNftRuleset(ofTable).hash}${ofTable.length > 0 ? '' : '-absent'}`;
}

export async function captureFirewall(): Promise<Record<string, FirewallTableState>> {
  const out: Record<string, FirewallTableState> = {};
  // The readings are independent processes: run them side by side (the repair path waits on them).
  const [nft4, nft6] = await Promise.all([
    captureIptables('nft', 'ipv4', out),
    captureIptables('nft', 'ipv6', out),
    captureIptables('legacy', 'ipv4', out),
    captureIptables('legacy', 'ipv6', out),
  ]);
  await captureNft(out, new Map([['ipv4', nft4], ['ipv6', nft6]]));
  return out;
}

export async function captureLiveState(): Promise<LiveState> {
  const [interfaces, firewall] = await Promise.all([captureInterfaces(), captureFirewall()]);
  return { interfaces, firewall };
}

/**
 * The current hashes of just these firewall tables (keys as in FirewallTableState.key), for verifying a repair
 * without reading the whole live state again. A table that does not exist is absent from the result.
 */
export async function captureFirewallHashes(keys: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const nftKeys = keys.filter((k) => k.startsWith('nftables '));
  const iptablesSources = new Set(keys.filter((k) => k.startsWith('iptables-')).map((k) => k.split(' ').slice(0, 2).join(' ')));
  await Promise.all([
    (async () => {
      if (nftKeys.length === 0) return;
      const items = await listRuleset();
      for (const key of nftKeys) {
        const [, family, name] = key.split(' ');
        const hash = nftTableHash(items, family!, name!);
        if (!hash.endsWith('-absent')) out[key] = hash;
      }
    })(),
    ...[...iptablesSources].map(async (source) => {
      const [backend, family] = source.split(' ') as ['iptables-nft' | 'iptables-legacy', IpFamily];
      const tables: Record<string, FirewallTableState> = {};
      await captureIptables(backend === 'iptables-nft' ? 'nft' : 'legacy', family, tables);
      for (const key of keys) if (tables[key]) out[key] = tables[key]!.hash;
    }),
  ]);
  return out;
}
