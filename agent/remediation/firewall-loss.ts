import { diffKeys } from '../../probes/firewall/ruleset.js';
import type { FirewallTableState } from './live-state.js';

/**
 * What became of one firewall table since the baseline. Only a table that lost something and gained nothing is
 * `lost` (a migration's flush takes away; it does not write new rules); anything else somebody wrote is `edited`,
 * and the safety net never rewrites it, whatever else happened.
 */
export type TableChange =
  | { shape: 'lost'; detail: string; lostChains: string[] | null }
  | { shape: 'edited'; detail: string };

export interface IptablesChain {
  name: string;
  /** "ACCEPT", "DROP" for built-in chains; "-" for user chains. */
  policy: string;
  rules: string[];
}

/** The chains of one iptables-save table block, in order, with their rules. */
export function parseIptablesBlock(text: string): Map<string, IptablesChain> {
  const chains = new Map<string, IptablesChain>();
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^\[\d+:\d+\]\s+/, '');
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (name) chains.set(name, { name, policy: policy ?? '-', rules: [] });
    } else if (line.startsWith('-A ')) {
      const name = line.split(/\s+/)[1] ?? '';
      if (!chains.has(name)) chains.set(name, { name, policy: '-', rules: [] });
      chains.get(name)!.rules.push(line);
    }
  }
  return chains;
}

/**
 * iptables chains that were lost: gone, or emptied where the baseline had rules. Chains somebody else manages (docker,
 * kube-proxy) come and go beside them and are not looked at; a chain that still has rules is its owner's business.
 */
export function lostIptablesChains(baseline: FirewallTableState, current: FirewallTableState): string[] {
  const before = parseIptablesBlock(baseline.text);
  const now = parseIptablesBlock(current.text);
  const lost: string[] = [];
  for (const chain of before.values()) {
    const present = now.get(chain.name);
    if (!present || (present.rules.length === 0 && chain.rules.length > 0)) lost.push(chain.name);
  }
  return lost;
}

export function compareTable(baseline: FirewallTableState, current: FirewallTableState | undefined): TableChange | null {
  if (!current) return { shape: 'lost', detail: `${baseline.key} is gone`, lostChains: null };
  if (current.hash === baseline.hash) return null;
  if (baseline.backend === 'nftables') {
    return diffKeys(baseline.lines, current.lines).added.length === 0
      ? { shape: 'lost', detail: `${baseline.key} lost ${baseline.lines.length - current.lines.length} of its ${baseline.lines.length} definitions`, lostChains: null }
      : { shape: 'edited', detail: `${baseline.key} was changed` };
  }
  const lostChains = lostIptablesChains(baseline, current);
  return lostChains.length > 0
    ? { shape: 'lost', detail: `${baseline.key} lost chain(s) ${lostChains.join(', ')}`, lostChains }
    : { shape: 'edited', detail: `${baseline.key} was changed` };
}

/**
 * An iptables-restore --noflush script that puts back just the lost chains: user chains that are gone are declared
 * again (declaring one flushes it, so only absent or empty ones are), and every lost chain gets its rules appended.
 * Built-in chains keep the policy they have now: setting a policy is an administrator's decision.
 */
export function iptablesChainsScript(baseline: FirewallTableState, current: FirewallTableState, lostChains: readonly string[]): string {
  const before = parseIptablesBlock(baseline.text);
  const now = parseIptablesBlock(current.text);
  const declare: string[] = [];
  const append: string[] = [];
  for (const name of lostChains) {
    const chain = before.get(name)!;
    if (chain.policy === '-' && !now.has(name)) declare.push(`:${name} - [0:0]`);
    append.push(...chain.rules);
  }
  return `*${baseline.table}\n${[...declare, ...append].map((l) => `${l}\n`).join('')}COMMIT\n`;
}
