import { readFileSync } from 'node:fs';
import { findExecutable, runCommand } from './run-command.js';

export type IptablesVariant = 'nft' | 'legacy';
export type IpFamily = 'ipv4' | 'ipv6';

function tool(variant: IptablesVariant, family: IpFamily, action: 'save' | 'restore'): string {
  return `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${variant}-${action}`;
}

export function iptablesAvailable(variant: IptablesVariant, family: IpFamily = 'ipv4'): boolean {
  return findExecutable(tool(variant, family, 'save')) !== null;
}

/** Which variant plain `iptables` is on this system (Debian's alternatives), from `iptables -V`. */
export async function defaultIptablesVariant(): Promise<IptablesVariant | null> {
  try {
    const { stdout } = await runCommand('iptables', ['-V']);
    if (stdout.includes('nf_tables')) return 'nft';
    if (stdout.includes('legacy')) return 'legacy';
    return null;
  } catch {
    return null;
  }
}

/**
 * `iptables-save` output of one variant and family: every table that exists, or just `table` (-t; iptables-nft-save
 * prints the built-in chains of a table that does not exist, iptables-legacy-save loads it).
 */
export async function iptablesSave(variant: IptablesVariant, family: IpFamily, table?: string): Promise<string> {
  const { stdout } = await runCommand(tool(variant, family, 'save'), table ? ['-t', table] : []);
  return stdout;
}

/**
 * Applies an iptables-restore script atomically per table. `noflush` keeps the tables' other rules (for adding a
 * chain); `testOnly` parses and checks it without committing.
 */
export async function iptablesRestore(
  variant: IptablesVariant,
  family: IpFamily,
  script: string,
  options: { noflush?: boolean; testOnly?: boolean } = {},
): Promise<void> {
  const args = [...(options.noflush ? ['--noflush'] : []), ...(options.testOnly ? ['--test'] : [])];
  await runCommand(tool(variant, family, 'restore'), args, { input: script });
}

/**
 * Whether iptables-legacy holds any table for this family, from /proc/net/ip{,6}_tables_names: a file read instead of
 * spawning iptables-legacy-save, for the poll that runs every second. No file (module not loaded) means no tables.
 */
export function legacyTablesPresent(family: IpFamily): boolean {
  try {
    return readFileSync(family === 'ipv4' ? '/proc/net/ip_tables_names' : '/proc/net/ip6_tables_names', 'utf8').trim().length > 0;
  } catch {
    return false;
  }
}
