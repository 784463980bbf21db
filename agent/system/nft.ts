import { runCommand } from './run-command.js';

/** One element of `nft -j list ruleset`'s top-level array (libnftables JSON schema 1). */
export type NftJsonItem =
  | { metainfo: Record<string, unknown> }
  | { table: { family: string; name: string; handle: number; flags?: unknown } }
  | { chain: { family: string; table: string; name: string; handle: number; type?: string; hook?: string; prio?: number; policy?: string } }
  | { rule: { family: string; table: string; chain: string; handle: number; expr: unknown[]; comment?: string } }
  | Record<string, unknown>;

/**
 * The one place flinch drives `nft`. Reads use the JSON output; writes go through `nft -f -`, which applies the whole
 * script as one transaction or nothing.
 */
export async function listRuleset(): Promise<NftJsonItem[]> {
  const { stdout } = await runCommand('nft', ['-j', 'list', 'ruleset']);
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new Error(`nft -j list ruleset: unparseable output: ${stdout.slice(0, 80)}`);
  }
  const items = (parsed as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) throw new Error('nft -j list ruleset: no "nftables" array in the output');
  return items as NftJsonItem[];
}

/** Applies an nft script atomically. With `checkOnly`, nft parses and validates it against the kernel but commits nothing. */
export async function applyNftScript(script: string, checkOnly = false): Promise<void> {
  await runCommand('nft', checkOnly ? ['-c', '-f', '-'] : ['-f', '-'], { input: script });
}
