import { applyNftScript } from '../../system/nft.js';
import { iptablesRestore, type IpFamily } from '../../system/iptables.js';
import { IPTABLES_CANARY_CHAIN, NFT_CANARY_TABLE } from '../../probes/firewall/ruleset.js';
import type { FirewallState } from './live-state.js';

/**
 * flinch's canaries, the way kube-proxy keeps KUBE-PROXY-CANARY: an empty nft table per family in use, and an empty
 * chain in each iptables table in use, that no rule uses and nobody has a reason to remove, so that their
 * disappearance shows a wholesale flush even of an empty ruleset. They explain damage; they never license a repair.
 * They belong to the safety net, which alone installs them (with --remediate on), puts them back when a flush took
 * them, and removes them when it stops. Each change is one atomic transaction, and adding what exists is a no-op.
 */

/** Every ruleset has this family available; it gets a canary even when the ruleset is empty. */
const ALWAYS_CANARY_FAMILIES = ['inet'];

/** Where canaries belong now: "nftables FAMILY" for each family in use, and each iptables table that exists. */
export function wantedCanaries(state: FirewallState): string[] {
  const families = new Set(ALWAYS_CANARY_FAMILIES);
  const wanted = new Set<string>();
  for (const table of Object.values(state.firewall)) {
    if (table.backend === 'nftables') families.add(table.family);
    else {
      // Only into tables already in use: creating a table is itself a change (and a legacy one mixes back ends).
      wanted.add(table.key);
      if (table.backend === 'iptables-nft') families.add(table.family === 'ipv4' ? 'ip' : 'ip6');
    }
  }
  for (const family of families) wanted.add(`nftables ${family}`);
  return [...wanted].sort();
}

function iptablesTarget(location: string): { variant: 'nft' | 'legacy'; family: IpFamily; table: string } {
  const [backend, family, table] = location.split(' ') as [string, IpFamily, string];
  return { variant: backend === 'iptables-nft' ? 'nft' : 'legacy', family, table };
}

async function change(locations: readonly string[], install: boolean): Promise<void> {
  const nft = locations.filter((l) => l.startsWith('nftables ')).map((l) => l.split(' ')[1]!);
  if (nft.length > 0) await applyNftScript(nft.map((family) => `${install ? 'add' : 'delete'} table ${family} ${NFT_CANARY_TABLE}\n`).join(''));
  const byTool = new Map<string, { variant: 'nft' | 'legacy'; family: IpFamily; tables: string[] }>();
  for (const location of locations.filter((l) => l.startsWith('iptables-'))) {
    const { variant, family, table } = iptablesTarget(location);
    const entry = byTool.get(`${variant} ${family}`) ?? { variant, family, tables: [] };
    entry.tables.push(table);
    byTool.set(`${variant} ${family}`, entry);
  }
  for (const { variant, family, tables } of byTool.values()) {
    // --noflush keeps every other chain and rule; declaring an existing chain again leaves an empty one as it is.
    const line = install ? `:${IPTABLES_CANARY_CHAIN} - [0:0]` : `-X ${IPTABLES_CANARY_CHAIN}`;
    await iptablesRestore(variant, family, tables.map((table) => `*${table}\n${line}\nCOMMIT\n`).join(''), { noflush: true });
  }
}

/** Installs the canaries that are wanted and missing; returns where. */
export async function installMissingCanaries(state: FirewallState): Promise<string[]> {
  const missing = wantedCanaries(state).filter((c) => !state.canaries.includes(c));
  if (missing.length > 0) await change(missing, true);
  return missing;
}

/**
 * Takes the canaries out, each on its own: one already gone (flushed meanwhile) must not keep the others in. Returns
 * the locations that could not be removed, with why.
 */
export async function removeCanaries(state: FirewallState): Promise<string[]> {
  const failures: string[] = [];
  for (const location of state.canaries) {
    await change([location], false).catch((error: Error) => failures.push(`${location}: ${error.message}`));
  }
  return failures;
}
