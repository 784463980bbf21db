import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError, agentIdArgument, printable } from '../../contract/command-line.js';
import { virsh } from '../../system/virsh.js';
import { LibvirtDriver } from '../drivers/libvirt-driver.js';
import { XlDriver } from '../drivers/xl-driver.js';
import { dom0Of, firstXl, parseXenHost } from '../lab/xen-domain.js';
import { namedGuests, runningXenDomains, type GuestEntry } from './rollout-guests.js';
import { FAULTS, type FaultName } from '../drivers/migration-driver.js';
import { isPostgresUrl, openStore, type FleetStore } from '../collector/store.js';
import { runRollout, type RolloutGuest, type RolloutOutcome, type RolloutSettings } from './rollout-runner.js';
import { startSimFleet } from './sim-fleet.js';

export interface RolloutCommandOptions extends RolloutSettings {
  driver: 'libvirt' | 'xl' | 'sim';
  out: string;
  /** libvirt, xl: the collectors' store, where the guests' agents report. */
  store?: string;
  libvirtUri: string;
  destination?: string;
  /** libvirt: where the destination QEMU listens for the stream, when the destination's hostname does not reach it. */
  migrateUri?: string;
  /** libvirt, xl: `DOMAIN` or `DOMAIN=AGENT-ID`; none (and no --guest-list): every running domain. */
  domain: string[];
  /** libvirt, xl: a file of guests, one `DOMAIN[=AGENT-ID]` a line, in order. */
  guestList?: string;
  /** xl: the Xen host the domains run on (`local` or ssh://), and the one they go to (the same: a localhost migration). */
  xlHost: string;
  xlDest?: string;
  sshConfig?: string;
  migrateTimeoutMs: number;
  /** sim: how many simulated guests, how long each migration freezes one, and which suffer which faults. */
  simGuests: number;
  simDowntimeMs: number;
  simFault: string[];
}

/** `flinch rollout`: the guests, the store, the run; the outcome for the CLI to print and turn into an exit code. */
export async function rolloutCommand(options: RolloutCommandOptions, log: (line: string) => void): Promise<RolloutOutcome> {
  if (options.driver === 'sim') {
    const fleet = await startSimFleet({ count: options.simGuests, downtimeMs: options.simDowntimeMs, faults: simFaults(options.simFault), log });
    try {
      return await finish(await runRollout(fleet.guests, options, fleet.store, options.out, log), options.out);
    } finally {
      await fleet.stop();
    }
  }
  if (options.store === undefined) throw new UserError("--store: the collectors' store (a file or postgres://…), where the guests' agents report", EXIT.usage);
  const guests = options.driver === 'xl' ? await xlGuests(options) : libvirtGuests(options);
  let store: FleetStore;
  try {
    store = await openStore(options.store);
  } catch (error) {
    throw new UserError(`--store ${isPostgresUrl(options.store) ? '' : `${options.store}: `}${(error as Error).message}`, EXIT.usage);
  }
  try {
    return await finish(await runRollout(guests, options, store, options.out, log), options.out);
  } finally {
    await store.close();
  }
}

/** `NAME:FAULT[+FAULT]`, e.g. `sim-7:guest-firewall-flush`. */
function simFaults(values: readonly string[]): Map<string, FaultName[]> {
  const faults = new Map<string, FaultName[]>();
  for (const value of values) {
    const [name, list] = value.split(':');
    const names = (list ?? '').split('+').filter(Boolean);
    const unknown = names.find((f) => !(FAULTS as readonly string[]).includes(f));
    if (!name || names.length === 0 || unknown !== undefined) throw new UserError(`--sim-fault ${value}: expected GUEST:FAULT[+FAULT] with faults from ${FAULTS.join(', ')}`, EXIT.usage);
    faults.set(name, names as FaultName[]);
  }
  return faults;
}

/** The domains given (or every running one), each moved by libvirt's live migration, its agent id its name unless told. */
function libvirtGuests(options: RolloutCommandOptions): RolloutGuest[] {
  if (options.destination === undefined) throw new UserError('--destination: the libvirt URI to migrate the guests to', EXIT.usage);
  let entries: GuestEntry[] | null = namedGuests(options.domain, options.guestList);
  if (entries === null) {
    const listed = virsh(options.libvirtUri, 'list', '--name', '--state-running');
    if (listed.status !== 0) throw new UserError(`--libvirt-uri ${options.libvirtUri}: virsh list failed: ${listed.stderr.trim()}`, EXIT.usage);
    entries = listed.stdout.split('\n').map((name) => name.trim()).filter(Boolean).map((domain) => ({ domain, agentId: agentIdArgument(domain) }));
    if (entries.length === 0) throw new UserError(`--libvirt-uri ${options.libvirtUri}: no running domain to roll out`, EXIT.usage);
  }
  return entries.map(({ domain, agentId }) => ({
    name: domain,
    agentId,
    async migrate() {
      const driver = new LibvirtDriver({
        uri: options.libvirtUri, domain, mode: 'migrate', destinationUri: options.destination!, migrateUri: options.migrateUri ?? null, saveFile: '', mac: '', virsh: 'virsh',
        timeoutMs: options.migrateTimeoutMs, persistent: true,
      });
      await driver.prepare();
      try {
        return await driver.migrate();
      } finally {
        await driver.cleanup();
      }
    },
  }));
}

/**
 * The Xen domains given (or every running one on --xl-host), each moved by `xl migrate` to --xl-dest, xl run in the
 * first host's dom0 (which reaches the second with its own ssh, as xl migrate always does). With --xl-dest the same
 * as --xl-host, each domain is migrated on its host (`xl migrate -s ''`, xl receiving it there): Xen's localhost
 * migration, which is what a live update of the host's toolstack puts its guests through.
 */
async function xlGuests(options: RolloutCommandOptions): Promise<RolloutGuest[]> {
  if (options.xlDest === undefined) throw new UserError('--xl-dest: the Xen host to migrate the domains to (the same as --xl-host: a migration on that host)', EXIT.usage);
  const host = parseXenHost('--xl-host', options.xlHost, options.sshConfig ?? null);
  const dest = parseXenHost('--xl-dest', options.xlDest, options.sshConfig ?? null);
  const sameHost = host.url === dest.url;
  const listed = await firstXl(dom0Of(host), host, ['list']);
  const running = runningXenDomains(listed.stdout);
  let entries = namedGuests(options.domain, options.guestList);
  if (entries === null) {
    entries = running.map((domain) => ({ domain, agentId: agentIdArgument(domain) }));
    if (entries.length === 0) throw new UserError(`--xl-host ${options.xlHost}: no running domain to roll out (xl list shows only dom0)`, EXIT.usage);
  } else {
    // Checked before anyone moves: a name that is not running there is the list's mistake, not a failed migration.
    const missing = entries.filter((e) => !running.includes(e.domain)).map((e) => e.domain);
    if (missing.length > 0) throw new UserError(`not running on ${host.name} (xl list): ${missing.slice(0, 5).map(printable).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`, EXIT.usage);
  }
  return entries.map(({ domain, agentId }) => ({
    name: domain,
    agentId,
    async migrate() {
      const driver = new XlDriver({
        domain, mode: 'migrate', xl: 'xl', remoteShell: host.remoteShell, timeoutMs: options.migrateTimeoutMs,
        target: sameHost ? 'xl migrate-receive' : host.name, migrateTransport: sameHost ? '' : null,
        peer: sameHost ? null : { remoteShell: dest.remoteShell, target: dest.name },
        saveFile: '', vifSpec: null,
      });
      await driver.prepare();
      return driver.migrate();
    },
  }));
}

async function finish(outcome: RolloutOutcome, outDir: string): Promise<RolloutOutcome> {
  writeFileSync(path.join(outDir, 'rollout.json'), `${JSON.stringify({ schema: 'flinch.rollout/v1', ...outcome }, null, 2)}\n`);
  return outcome;
}

/** The outcome as the operator reads it: what was migrated, and if the rollout stopped, which guests and why. */
export function renderRollout(outcome: RolloutOutcome): string {
  const counts = new Map<string, number>();
  for (const o of outcome.migrated) counts.set(o.verdict, (counts.get(o.verdict) ?? 0) + 1);
  const lines = [`${outcome.migrated.length} guest(s) migrated: ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ') || 'none'}`];
  if (outcome.halted) {
    const { share, window, worst } = outcome.halted;
    lines.push(`HALTED: ${(share * 100).toFixed(2)} % of the last ${window} guest(s) disrupted, silent or failed; ${outcome.untouched.length} guest(s) left untouched`);
    for (const o of worst) lines.push(`  ${o.guest} (agent ${o.agentId}): ${o.verdict}: ${o.evidence.slice(0, 4).join('; ')}`);
    if (outcome.untouched.length > 0) lines.push(`untouched: ${outcome.untouched.join(', ')}`);
  }
  return lines.map(printable).join('\n');
}
