import { ipJson } from '../../system/ip.js';
import { listRuleset, type NftJsonItem } from '../../system/nft.js';
import { runCommand } from '../../system/run-command.js';
import { iptablesAvailable, iptablesSave, type IpFamily, type IptablesVariant } from '../../system/iptables.js';
import { findExecutable } from '../../system/run-command.js';
import { iptablesNftTables, isDynamicSet, nftSetOf, normalizeIptablesSave, normalizeNftRuleset, NFT_CANARY_TABLE, type NormalizedRuleset } from '../../probes/firewall/ruleset.js';

/** One interface's network state, keyed by MAC: after a replug the name may be the same but the ifindex is not. */
export interface InterfaceState {
  mac: string;
  name: string;
  mtu: number;
  adminUp: boolean;
  /**
   * "192.0.2.10/24", "2001:db8::10/64": permanent global-scope addresses only. Link-local ones the kernel makes
   * itself; ones with a finite lifetime (DHCP, SLAAC) belong to their daemon, which renews them, and restoring one as
   * permanent would outlive its lease.
   */
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
  /** nft: `nft -s list table` (stateless: no counter values, no quota use); iptables: its iptables-save block. */
  text: string;
  /** The table's meaning, one line per table, chain, set and rule, without counters, handles or dynamic elements. */
  lines: string[];
  /** nft: the sets and maps ("inet t name") whose elements are run-time state, emptied when the table is restored. */
  dynamicSets: string[];
  hash: string;
}

export interface LiveState {
  interfaces: Record<string, InterfaceState>;
  firewall: Record<string, FirewallTableState>;
  /** Where flinch's canaries are now: "nftables inet", "iptables-nft ipv4 filter", … (not part of the baseline). */
  canaries: string[];
}

export type FirewallState = Pick<LiveState, 'firewall' | 'canaries'>;

interface IpAddrJson {
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  link_type?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string; dynamic?: boolean; valid_life_time?: number }>;
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

/**
 * Routes the kernel makes and removes by itself along with addresses and links, and routes a DHCP client installs
 * with its lease: not flinch's to restore.
 */
const KERNEL_MANAGED_PROTOCOLS = new Set(['kernel', 'ra', 'redirect', 'dhcp']);
/** `ip -j` prints a lifetime of "forever" as this. */
const FOREVER = 4294967295;

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
        .filter((a) => a.scope === 'global' && !a.dynamic && (a.valid_life_time === undefined || a.valid_life_time >= FOREVER))
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort(),
      routes: routes
        .filter((r) => r.dev === link.ifname && !KERNEL_MANAGED_PROTOCOLS.has(r.protocol ?? '') && (r.type ?? 'unicast') === 'unicast')
        .map((r) => ({ family: r.family, destination: r.dst, gateway: r.gateway ?? null }))
        // By code unit, not localeCompare: the order must not depend on the guest's locale, and collation would page
        // ICU's data into every agent (~2.7 MB of RSS).
        .sort((a, b) => {
          const [x, y] = [`${a.family}${a.destination}`, `${b.family}${b.destination}`];
          return x < y ? -1 : x > y ? 1 : 0;
        }),
    };
  }
  return interfaces;
}

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

/**
 * A rule whose interface match now names a bare index no longer matches the interface it was written for (the
 * interface went away, perhaps to come back under a new index): it is left out, so the table reads as having lost it.
 */
function tableLines(ruleset: NormalizedRuleset): string[] {
  const intact = ruleset.rules.filter((r) => !r.interfaceRefs.some((ref) => /^\d+$/.test(ref.value)));
  return [...ruleset.structure, ...intact.map((r) => r.key)];
}

/** iptables-save prints this instead of a table it cannot read (a native nft table with an iptables name). */
const INCOMPATIBLE_TABLE = /^# Table '([^']+)' contains incompatible base-chains/;

/**
 * One variant and family of iptables, a table each. `owned` (iptables-nft only) names the nf_tables tables that
 * iptables-nft made, as "ip filter"; any other table of that name is a native nft table and is left to captureNft.
 */
async function captureIptables(variant: IptablesVariant, family: IpFamily, out: FirewallState, owned?: Set<string>): Promise<void> {
  if (!iptablesAvailable(variant, family)) return;
  const backend = variant === 'nft' ? 'iptables-nft' : 'iptables-legacy';
  const saved = await iptablesSave(variant, family);
  const incompatible = new Set(saved.split('\n').map((line) => INCOMPATIBLE_TABLE.exec(line)?.[1]).filter((t): t is string => t !== undefined));
  for (const [table, text] of splitIptablesSave(saved)) {
    if (incompatible.has(table)) continue;
    if (owned && !owned.has(`${family === 'ipv4' ? 'ip' : 'ip6'} ${table}`)) continue;
    const key = `${backend} ${family} ${table}`;
    const normalized = normalizeIptablesSave(backend, family, text);
    if (normalized.canaries.length > 0) out.canaries.push(key);
    out.firewall[key] = { key, backend, table, family, text, lines: tableLines(normalized), dynamicSets: [], hash: normalized.hash };
  }
}

/** The items of one nft table in a ruleset listing. */
function itemsOfTable(items: readonly NftJsonItem[], family: string, name: string): NftJsonItem[] {
  return items.filter((item) => {
    const body = Object.values(item)[0] as { family?: string; table?: string; name?: string } | undefined;
    if ('table' in item) return body?.family === family && body?.name === name;
    return body?.family === family && body?.table === name;
  });
}

/** nft tables, each with its own stateless text and its meaning; iptables-nft's tables and flinch's canaries are not. */
async function captureNft(out: FirewallState, items: readonly NftJsonItem[], owned: Set<string>): Promise<void> {
  const tables = items.flatMap((i) => ('table' in i ? [i.table as { family: string; name: string }] : []));
  await Promise.all(tables.map(async ({ family, name }) => {
    if (name === NFT_CANARY_TABLE) out.canaries.push(`nftables ${family}`);
    if (name === NFT_CANARY_TABLE || owned.has(`${family} ${name}`)) return;
    let stdout: string;
    try {
      ({ stdout } = await runCommand('nft', ['-s', 'list', 'table', family, name]));
    } catch (error) {
      // Listed a moment ago and gone now: flushed meanwhile (the very loss this capture is looking for), so absent.
      if (/No such file or directory/.test((error as Error).message)) return;
      throw error;
    }
    const ofTable = itemsOfTable(items, family, name);
    const normalized = normalizeNftRuleset(ofTable);
    const dynamicSets = ofTable.flatMap((item) => {
      const set = nftSetOf(item);
      return set && isDynamicSet(set) ? [`${set.family} ${set.table} ${set.name}`] : [];
    });
    const key = `nftables ${family} ${name}`;
    out.firewall[key] = { key, backend: 'nftables', table: `${family} ${name}`, family, text: stdout, lines: tableLines(normalized), dynamicSets, hash: normalized.hash };
  }));
}

export async function captureFirewall(): Promise<FirewallState> {
  const out: FirewallState = { firewall: {}, canaries: [] };
  const items = findExecutable('nft') ? await listRuleset() : [];
  const owned = iptablesNftTables(items);
  // The readings are independent processes: run them side by side (the repair path waits on them).
  await Promise.all([
    captureIptables('nft', 'ipv4', out, owned),
    captureIptables('nft', 'ipv6', out, owned),
    captureIptables('legacy', 'ipv4', out),
    captureIptables('legacy', 'ipv6', out),
    captureNft(out, items, owned),
  ]);
  out.canaries.sort();
  return out;
}

export async function captureLiveState(): Promise<LiveState> {
  const [interfaces, firewall] = await Promise.all([captureInterfaces(), captureFirewall()]);
  return { interfaces, ...firewall };
}

