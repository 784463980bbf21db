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

/**
 * The elements of one set as nft prints them ("10.0.0.1 timeout 1h expires 29m59s992ms, …"), which `add element`
 * takes back as they are, remaining lifetimes included; '' for an empty set, null when the set is not there.
 */
export async function listSetElements(set: string): Promise<string | null> {
  let stdout: string;
  try {
    ({ stdout } = await runCommand('nft', ['list', 'set', ...set.split(' ')]));
  } catch (error) {
    if (/No such file or directory/.test((error as Error).message)) return null;
    throw error;
  }
  return elementsBlock(stdout);
}

/** What is between `elements = {` and its closing brace (quoted strings may hold braces); '' when there is none. */
export function elementsBlock(listing: string): string {
  const start = listing.indexOf('elements = {');
  if (start < 0) return '';
  let depth = 0;
  let quoted = false;
  for (let i = start + 'elements = '.length; i < listing.length; i += 1) {
    const c = listing[i];
    if (c === '"' && listing[i - 1] !== '\\') quoted = !quoted;
    if (quoted) continue;
    if (c === '{') depth += 1;
    if (c === '}' && --depth === 0) return listing.slice(start + 'elements = {'.length, i).trim();
  }
  throw new Error(`an unterminated elements block in: ${listing.slice(start, start + 80)}`);
}
