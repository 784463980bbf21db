import { readFileSync, statSync } from 'node:fs';
import { EXIT, UserError, agentIdArgument, printable } from '../../contract/command-line.js';
import { xlListDomains } from '../lab/xen-domain.js';

/** A guest to roll out as the operator named it: the domain, and the agent id its reports come under. */
export interface GuestEntry {
  domain: string;
  agentId: string;
}

/** A fleet's list is thousands of lines, not megabytes: anything bigger is the wrong file. */
const GUEST_LIST_MAX_BYTES = 4 * 1024 * 1024;
/** libvirt and xl take almost any name; whitespace, `=` and control characters would make the list ambiguous. */
const DOMAIN_NAME = /^[^\s=\p{Cc}]{1,256}$/u;

/** `DOMAIN` or `DOMAIN=AGENT-ID` (the agent id is the domain's name when not given). */
export function parseGuestEntry(spec: string, where: string): GuestEntry {
  const at = spec.indexOf('=');
  const domain = at < 0 ? spec : spec.slice(0, at);
  const agentId = at < 0 ? spec : spec.slice(at + 1);
  if (!DOMAIN_NAME.test(domain)) throw new UserError(`${where}: ${printable(spec)}: expected DOMAIN or DOMAIN=AGENT-ID`, EXIT.usage);
  try {
    return { domain, agentId: agentIdArgument(agentId) };
  } catch {
    throw new UserError(`${where}: ${printable(spec)}: the agent id may hold only letters, digits and . _ : @ - (1..128)${at < 0 ? '; give DOMAIN=AGENT-ID' : ''}`, EXIT.usage);
  }
}

/**
 * `--guest-list FILE`: one guest a line, `DOMAIN` or `DOMAIN=AGENT-ID`, in the order to migrate them; blank lines and
 * `#` comments are skipped. Every error names the line.
 */
export function readGuestList(file: string): GuestEntry[] {
  let text: string;
  try {
    if (statSync(file).size > GUEST_LIST_MAX_BYTES) throw new Error(`larger than ${GUEST_LIST_MAX_BYTES / 1024 / 1024} MiB`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new UserError(`--guest-list ${printable(file)}: ${reason}`, EXIT.usage);
  }
  const entries: GuestEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line) entries.push(parseGuestEntry(line, `--guest-list ${printable(file)}, line ${i + 1}`));
  }
  if (entries.length === 0) throw new UserError(`--guest-list ${printable(file)}: no guest in it`, EXIT.usage);
  return entries;
}

/** The guests named by --domain or --guest-list, once each; null when neither names any (take what runs). */
export function namedGuests(domains: readonly string[], guestList: string | undefined): GuestEntry[] | null {
  if (domains.length > 0 && guestList !== undefined) throw new UserError('give the guests by --domain or by --guest-list, not both', EXIT.usage);
  const entries = guestList !== undefined ? readGuestList(guestList) : domains.map((spec) => parseGuestEntry(spec, '--domain'));
  if (entries.length === 0) return null;
  for (const key of ['domain', 'agentId'] as const) {
    const seen = new Set<string>();
    for (const entry of entries) {
      if (seen.has(entry[key])) throw new UserError(`${printable(entry[key])} is named twice${key === 'agentId' ? ' as an agent id' : ''}: each guest is migrated once and judged by its own agent`, EXIT.usage);
      seen.add(entry[key]);
    }
  }
  return entries;
}

/** `xl list`: the domains that are running or blocked (not paused, shutting down, crashed or dying), dom0 left out. */
export function runningXenDomains(xlList: string): string[] {
  return xlListDomains(xlList).filter((d) => d.domid !== 0 && !/[pscd]/.test(d.state.replace(/-/g, ''))).map((d) => d.name);
}
