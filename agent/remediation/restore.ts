import { applyNftScript, listSetElements } from '../../system/nft.js';
import { iptablesRestore, iptablesSave, type IpFamily } from '../../system/iptables.js';
import { ip } from '../../system/ip.js';
import { findExecutable, runCommand } from '../../system/run-command.js';
import { splitIptablesSave, type FirewallTableState, type InterfaceState, type RouteState } from './live-state.js';
import { iptablesChainsScript, lostIptablesChains } from './firewall-loss.js';

/**
 * The commands the safety net runs, one function per kind of repair. Firewall repairs are single transactions that
 * are checked by the tool first (`nft -c`, `iptables-restore --test`) and applied only if the check passes.
 */

/**
 * Replaces one nft table with its baseline in one transaction: creating it first makes the delete safe. Its dynamic
 * sets' elements (bans, meters) are run-time state the baseline only had a stale copy of: they are emptied, and where
 * the table was still there (partly emptied, not gone) they get back what they hold now, lifetimes left included.
 */
function nftTableScript(baseline: FirewallTableState, liveElements: ReadonlyMap<string, string>): string {
  const dynamic = baseline.dynamicSets.map((set) => {
    const elements = liveElements.get(set);
    return `flush set ${set}\n${elements ? `add element ${set} { ${elements} }\n` : ''}`;
  }).join('');
  return `table ${baseline.table}\ndelete table ${baseline.table}\n${baseline.text}${dynamic}`;
}

/**
 * The elements the dynamic sets of these tables hold now, read just before the repair (a ban added between this read
 * and the transaction, a few ms, would still be lost). Sets of a table that is gone have nothing to give.
 */
async function liveDynamicElements(baselines: readonly FirewallTableState[]): Promise<Map<string, string>> {
  const elements = new Map<string, string>();
  await Promise.all(baselines.flatMap((b) => b.dynamicSets).map(async (set) => {
    const held = await listSetElements(set);
    if (held) elements.set(set, held);
  }));
  return elements;
}

export interface NftRestoreResult {
  /** The command that was (or, in dry-run, would be) applied, for the audit; null when every table was refused. */
  command: string | null;
  /** Tables `nft -c` refused, with nft's reason: they fail alone and are not applied. */
  refused: Map<string, string>;
}

/**
 * Puts nft tables back from their baselines. Each table is checked with `nft -c` on its own, so a table the kernel
 * will not take (a module gone, a set type changed) fails alone; the rest go back together, in one transaction.
 */
export async function restoreNftTables(baselines: readonly FirewallTableState[], dryRun: boolean): Promise<NftRestoreResult> {
  const refused = new Map<string, string>();
  const accepted: FirewallTableState[] = [];
  const live = await liveDynamicElements(baselines);
  await Promise.all(baselines.map(async (baseline) => {
    try {
      await applyNftScript(nftTableScript(baseline, live), true);
      accepted.push(baseline);
    } catch (error) {
      // The live elements are what nft printed a moment ago; should one not go back (expired meanwhile), the table
      // still does, with its dynamic sets empty, rather than not at all.
      const withoutLive = baseline.dynamicSets.some((set) => live.has(set));
      if (withoutLive) baseline.dynamicSets.forEach((set) => live.delete(set));
      if (withoutLive && (await applyNftScript(nftTableScript(baseline, live), true).then(() => true, () => false))) accepted.push(baseline);
      else refused.set(baseline.key, (error as Error).message);
    }
  }));
  if (accepted.length === 0) return { command: null, refused };
  const script = baselines.filter((b) => accepted.includes(b)).map((b) => nftTableScript(b, live)).join('');
  if (!dryRun) await applyNftScript(script);
  return { command: `nft -f - <<'EOF'\n${script}EOF`, refused };
}

/**
 * Puts an iptables table back. A table that is gone is restored whole (without --noflush iptables-restore replaces
 * exactly the tables in its input, and there is nothing there to replace); in a table that is still there only the
 * lost chains go back, with --noflush, so chains and rules others added since stay as they are.
 *
 * An append cannot be made conditional in iptables, so the table is read again right before the write, and only
 * chains still lost then are put back: another writer (kube-proxy's check-then-add, a firewall service's reload) may
 * have refilled one since the reading that found the loss, and appending to it again would duplicate its rules. What
 * is left is the few ms between this reading and the commit, the same window that writer's own check-then-add has.
 */
export async function restoreIptablesTable(baseline: FirewallTableState, current: FirewallTableState | undefined, lostChains: readonly string[] | null, dryRun: boolean): Promise<string> {
  const variant = baseline.backend === 'iptables-nft' ? 'nft' : 'legacy';
  const family = baseline.family as IpFamily;
  const tool = `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${variant}-restore`;
  let script = baseline.text;
  let noflush = false;
  if (current !== undefined && lostChains !== null) {
    const freshText = splitIptablesSave(await iptablesSave(variant, family, baseline.table)).get(baseline.table);
    if (freshText !== undefined) {
      const fresh = { ...current, text: freshText };
      const stillLost = lostIptablesChains(baseline, fresh).filter((chain) => lostChains.includes(chain));
      if (stillLost.length === 0) return `# nothing written: ${lostChains.join(', ')} put back by another writer before ${tool} ran`;
      script = iptablesChainsScript(baseline, fresh, stillLost);
      noflush = true;
    }
  }
  await iptablesRestore(variant, family, script, { testOnly: true, noflush });
  if (!dryRun) await iptablesRestore(variant, family, script, { noflush });
  return `${tool}${noflush ? ' --noflush' : ''} <<'EOF'\n${script}EOF`;
}

export async function setLinkUp(name: string, dryRun: boolean): Promise<string> {
  if (!dryRun) await ip(['link', 'set', 'dev', name, 'up']);
  return `ip link set dev ${name} up`;
}

export async function setMtu(name: string, mtu: number, dryRun: boolean): Promise<string> {
  if (!dryRun) await ip(['link', 'set', 'dev', name, 'mtu', String(mtu)]);
  return `ip link set dev ${name} mtu ${mtu}`;
}

export async function addAddress(name: string, cidr: string, dryRun: boolean): Promise<string> {
  // nodad: the address was this guest's a moment ago; waiting out duplicate detection would only prolong the outage.
  const args = ['addr', 'replace', cidr, 'dev', name, ...(cidr.includes(':') ? ['nodad'] : [])];
  if (!dryRun) await ip(args);
  return `ip ${args.join(' ')}`;
}

export async function addRoute(name: string, route: RouteState, dryRun: boolean): Promise<string> {
  const args = [route.family === 'inet' ? '-4' : '-6', 'route', 'replace', route.destination, ...(route.gateway ? ['via', route.gateway] : []), 'dev', name];
  if (!dryRun) await ip(args);
  return `ip ${args.join(' ')}`;
}

/**
 * Tells the neighbours where this guest is now: a gratuitous ARP for IPv4 (iputils-arping) and an unsolicited
 * neighbour advertisement for IPv6 (ndisc6's ndsend). Missing tools are reported, not fatal.
 */
export async function announceAddress(iface: InterfaceState, cidr: string, dryRun: boolean): Promise<string> {
  const address = cidr.split('/')[0]!;
  const [tool, args] = address.includes(':') ? ['ndsend', [address, iface.name]] : ['arping', ['-U', '-c', '1', '-I', iface.name, address]];
  if (!findExecutable(tool)) throw new Error(`${tool} is not installed (${address.includes(':') ? 'ndisc6' : 'iputils-arping'})`);
  if (!dryRun) await runCommand(tool, args, { timeout: 5000 });
  return `${tool} ${args.join(' ')}`;
}
