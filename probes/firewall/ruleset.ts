import { createHash } from 'node:crypto';
import type { NftJsonItem } from '../../system/nft.js';
import type { FirewallBackend } from '../../contract/observation.js';

/** flinch's canaries: an empty nft table per family in use, and an empty chain per iptables table in use. */
export const NFT_CANARY_TABLE = 'flinch_canary';
export const IPTABLES_CANARY_CHAIN = 'FLINCH-CANARY';

export interface InterfaceRef {
  key: 'iif' | 'oif';
  /** As nft prints it: the interface's name while the index exists, the bare index once it does not. */
  value: string;
}

export interface NormalizedRule {
  /** One line that identifies the rule's meaning: where it lives and what it does, without handles or counters. */
  key: string;
  table: string;
  chain: string;
  /** nft's rule handle (stable for the rule's lifetime); null for iptables. */
  handle: number | null;
  interfaceRefs: InterfaceRef[];
}

export interface NormalizedRuleset {
  backend: FirewallBackend;
  /** Tables and chains with their hooks and policies, in order. */
  structure: string[];
  rules: NormalizedRule[];
  /** Canaries found: nft families, or iptables tables, that hold flinch's canary. */
  canaries: string[];
  hash: string;
}

/** Fields that change without anyone changing the ruleset: handles, counters, quota use, element expiry. */
const VOLATILE_KEYS = new Set(['handle', 'packets', 'bytes', 'used', 'expires']);

function withoutVolatile(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutVolatile);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (VOLATILE_KEYS.has(k)) continue;
    out[k] = withoutVolatile(v);
  }
  return out;
}

interface NftSetBody {
  family: string;
  table: string;
  name: string;
  flags?: string | string[];
  timeout?: number;
  elem?: unknown[];
}

/**
 * A set or map whose elements come and go by themselves or at run time (fail2ban's and crowdsec's bans, rate-limit
 * meters): elements with timeouts, or added by rules (`dynamic`). Its elements are state, not configuration: they
 * are neither compared with a baseline nor restored from one.
 */
export function isDynamicSet(body: NftSetBody): boolean {
  const flags = Array.isArray(body.flags) ? body.flags : body.flags ? [body.flags] : [];
  return flags.includes('timeout') || flags.includes('dynamic') || body.timeout !== undefined;
}

/** The set or map an nft JSON item describes, if it is one. */
export function nftSetOf(item: NftJsonItem): NftSetBody | null {
  const body = ('set' in item ? item.set : 'map' in item ? item.map : null) as NftSetBody | null;
  return body && typeof body === 'object' ? body : null;
}

function interfaceRefsOf(expr: unknown[]): InterfaceRef[] {
  const refs: InterfaceRef[] = [];
  for (const statement of expr) {
    const match = (statement as { match?: { left?: { meta?: { key?: string } }; right?: unknown } }).match;
    const key = match?.left?.meta?.key;
    if ((key === 'iif' || key === 'oif') && (typeof match?.right === 'string' || typeof match?.right === 'number')) {
      refs.push({ key, value: String(match.right) });
    }
  }
  return refs;
}

function digest(lines: readonly string[]): string {
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16);
}

/** Normalises `nft -j list ruleset` so that the hash moves only when the ruleset's meaning does. */
export function normalizeNftRuleset(items: readonly NftJsonItem[]): NormalizedRuleset {
  const structure: string[] = [];
  const rules: NormalizedRule[] = [];
  const canaries: string[] = [];
  for (const item of items) {
    if ('table' in item) {
      const t = item.table as { family: string; name: string };
      if (t.name === NFT_CANARY_TABLE) canaries.push(t.family);
      else structure.push(`table ${t.family} ${t.name}`);
    } else if ('chain' in item) {
      const c = item.chain as { family: string; table: string; name: string; type?: string; hook?: string; prio?: number; policy?: string };
      // iptables-nft's canary chain lives in nf_tables too; it is flinch's, not the user's.
      if (c.table === NFT_CANARY_TABLE || c.name === IPTABLES_CANARY_CHAIN) continue;
      const base = c.hook ? ` ${c.type} hook ${c.hook} priority ${c.prio} policy ${c.policy}` : '';
      structure.push(`chain ${c.family} ${c.table} ${c.name}${base}`);
    } else if ('rule' in item) {
      const r = item.rule as { family: string; table: string; chain: string; handle: number; expr: unknown[]; comment?: string };
      if (r.table === NFT_CANARY_TABLE || r.chain === IPTABLES_CANARY_CHAIN) continue;
      const table = `${r.family} ${r.table}`;
      const body = JSON.stringify(withoutVolatile(r.expr));
      rules.push({
        key: `${table} ${r.chain} ${body}${r.comment ? ` comment ${JSON.stringify(r.comment)}` : ''}`,
        table,
        chain: r.chain,
        handle: r.handle,
        interfaceRefs: interfaceRefsOf(r.expr),
      });
    } else if (!('metainfo' in item)) {
      // sets, maps, flowtables, named objects: part of the meaning, minus their counters and dynamic elements
      if (JSON.stringify(item).includes(`"table":"${NFT_CANARY_TABLE}"`)) continue;
      const set = nftSetOf(item);
      if (set && isDynamicSet(set)) {
        const { elem: _elements, ...definition } = set;
        structure.push(JSON.stringify(withoutVolatile({ [Object.keys(item)[0]!]: definition })));
      } else {
        structure.push(JSON.stringify(withoutVolatile(item)));
      }
    }
  }
  return { backend: 'nftables', structure, rules, canaries, hash: digest([...structure, ...rules.map((r) => r.key)]) };
}

/** Normalises iptables-save output: counters and comments out, canary chains set aside, rules in order. */
export function normalizeIptablesSave(backend: FirewallBackend, family: string, text: string): NormalizedRuleset {
  const structure: string[] = [];
  const rules: NormalizedRule[] = [];
  const canaries: string[] = [];
  let table = '';
  for (const rawLine of text.split('\n')) {
    // iptables-save -c puts "[packets:bytes]" before each rule; the counters are not the ruleset.
    const line = rawLine.trim().replace(/^\[\d+:\d+\]\s+/, '');
    if (!line || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = `${family} ${line.slice(1)}`;
      structure.push(`table ${table}`);
    } else if (line.startsWith(':')) {
      const [chain, policy] = line.slice(1).split(/\s+/);
      if (chain === IPTABLES_CANARY_CHAIN) canaries.push(table);
      else structure.push(`chain ${table} ${chain} ${policy}`);
    } else if (line.startsWith('-A ')) {
      const chain = line.split(/\s+/)[1] ?? '';
      if (chain === IPTABLES_CANARY_CHAIN) continue;
      rules.push({ key: `${table} ${line}`, table, chain, handle: null, interfaceRefs: [] });
    }
  }
  return { backend, structure, rules, canaries, hash: digest([...structure, ...rules.map((r) => r.key)]) };
}

/** Keys that appeared and vanished between two readings, as multisets (a key may be there twice). */
export function diffKeys(previous: readonly string[], next: readonly string[]): { added: string[]; removed: string[] } {
  const counts = new Map<string, number>();
  for (const key of previous) counts.set(key, (counts.get(key) ?? 0) + 1);
  const added: string[] = [];
  for (const key of next) {
    const n = counts.get(key) ?? 0;
    if (n > 0) counts.set(key, n - 1);
    else added.push(key);
  }
  const removed: string[] = [];
  for (const [key, n] of counts) for (let i = 0; i < n; i += 1) removed.push(key);
  return { added, removed };
}

/** Rules that appeared and vanished between two readings, as multisets of keys (a rule may appear twice). */
export function diffRules(previous: readonly NormalizedRule[], next: readonly NormalizedRule[]): { added: string[]; removed: string[] } {
  return diffKeys(previous.map((r) => r.key), next.map((r) => r.key));
}

/** iptables-nft's built-in base chains per table, with the priority it gives each (iptables/nft.c). */
const IPTABLES_BUILTIN_CHAINS: Record<string, Record<string, number>> = {
  filter: { INPUT: 0, FORWARD: 0, OUTPUT: 0 },
  mangle: { PREROUTING: -150, INPUT: -150, FORWARD: -150, OUTPUT: -150, POSTROUTING: -150 },
  nat: { PREROUTING: -100, INPUT: 100, OUTPUT: -100, POSTROUTING: 100 },
  raw: { PREROUTING: -300, OUTPUT: -300 },
  security: { INPUT: 50, FORWARD: 50, OUTPUT: 50 },
};

/**
 * The nf_tables tables that iptables-nft made, as "family name" (family ip or ip6), told apart from native nft tables
 * that merely share a name (`table ip filter` is common in hand-written configs) by what is in them: iptables-nft's
 * base chains are the upper-case built-ins at the standard priorities. A table with any other base chain, or none, is
 * nft's alone (iptables-save calls it "incompatible" and prints an empty table in its place).
 */
export function iptablesNftTables(items: readonly NftJsonItem[]): Set<string> {
  const baseChains = new Map<string, number>();
  const foreign = new Set<string>();
  for (const item of items) {
    if (!('chain' in item)) continue;
    const c = item.chain as { family: string; table: string; name: string; hook?: string; prio?: number };
    const builtins = IPTABLES_BUILTIN_CHAINS[c.table];
    if ((c.family !== 'ip' && c.family !== 'ip6') || !builtins || c.hook === undefined) continue;
    const key = `${c.family} ${c.table}`;
    baseChains.set(key, (baseChains.get(key) ?? 0) + 1);
    if (builtins[c.name] !== c.prio) foreign.add(key);
  }
  return new Set([...baseChains.keys()].filter((key) => !foreign.has(key)));
}
