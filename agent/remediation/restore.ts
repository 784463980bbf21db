import { applyNftScript } from '../system/nft.js';
import { iptablesRestore, type IpFamily } from '../system/iptables.js';
import { ip } from '../system/ip.js';
import { findExecutable, runCommand } from '../system/run-command.js';
import type { FirewallTableState, InterfaceState, RouteState } from './live-state.js';

/**
 * The commands the safety net runs, one function per kind of repair. Firewall repairs are single transactions that
 * are checked by the tool first (`nft -c`, `iptables-restore --test`) and applied only if the check passes.
 */

/** Replaces one nft table with its baseline text in one transaction; creating it first makes the delete safe. */
function nftTableScript(baseline: FirewallTableState): string {
  return `table ${baseline.table}\ndelete table ${baseline.table}\n${baseline.text}`;
}

/** Puts nft tables back from their baselines in one transaction, checked with `nft -c` first; returns the command. */
export async function restoreNftTables(baselines: readonly FirewallTableState[], dryRun: boolean): Promise<string> {
  const script = baselines.map(nftTableScript).join('');
  await applyNftScript(script, true);
  if (!dryRun) await applyNftScript(script);
  return `nft -f - <<'EOF'\n${script}EOF`;
}

export async function restoreFirewallTable(baseline: FirewallTableState, dryRun: boolean): Promise<string> {
  if (baseline.backend === 'nftables') return restoreNftTables([baseline], dryRun);
  const variant = baseline.backend === 'iptables-nft' ? 'nft' : 'legacy';
  const family = baseline.family as IpFamily;
  // Without --noflush, iptables-restore replaces exactly the tables named in its input: this one.
  await iptablesRestore(variant, family, baseline.text, { testOnly: true });
  if (!dryRun) await iptablesRestore(variant, family, baseline.text);
  return `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${variant}-restore <<'EOF'\n${baseline.text}EOF`;
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
