import { applyNftScript } from '../../agent/system/nft.js';
import { iptablesRestore, type IpFamily, type IptablesVariant } from '../../agent/system/iptables.js';
import { IPTABLES_CANARY_CHAIN, NFT_CANARY_TABLE } from './ruleset.js';

/**
 * Installs flinch's canaries, the way kube-proxy keeps KUBE-PROXY-CANARY: empty tables and chains that no rule uses
 * and nobody has a reason to remove, so their disappearance proves a wholesale flush even of an empty ruleset.
 * Each is one atomic transaction, and adding what already exists is a no-op.
 */
export async function installNftCanaries(families: readonly string[]): Promise<void> {
  if (families.length === 0) return;
  await applyNftScript(families.map((family) => `add table ${family} ${NFT_CANARY_TABLE}\n`).join(''));
}

export async function installIptablesCanaries(variant: IptablesVariant, family: IpFamily, tables: readonly string[]): Promise<void> {
  if (tables.length === 0) return;
  // --noflush keeps every other chain and rule; declaring an existing chain again leaves it as it is.
  const script = tables.map((table) => `*${table}\n:${IPTABLES_CANARY_CHAIN} - [0:0]\nCOMMIT\n`).join('');
  await iptablesRestore(variant, family, script, { noflush: true });
}
