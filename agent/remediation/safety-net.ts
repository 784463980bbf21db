import type { RemediationAction } from '../../contract/report-schema.js';
import type { RemediationOutcome } from '../episodes/verdict.js';
import { StateDir } from '../state/state-dir.js';
import { monotonicMs, stampNow } from '../../probes/clock/read-clocks.js';
import { captureFirewall as captureFirewallState, captureLiveState, type FirewallState, type InterfaceState, type LiveState } from './live-state.js';
import { addAddress, addRoute, announceAddress, restoreIptablesTable, restoreNftTables, setLinkUp, setMtu } from './restore.js';
import { compareTable } from './firewall-loss.js';
import { installMissingCanaries, removeCanaries } from './canaries.js';
import { askDaemonToStep, runningTimeDaemon, stepRealtime } from '../../system/clock.js';

export type RemediationMode = 'off' | 'dry-run' | 'on';

/** What a check must read again: everything, or only the firewall (after a firewall observation). */
export type CheckScope = 'all' | 'firewall';

export interface SafetyNetOptions {
  mode: RemediationMode;
  /** A change left alone (no migration explains it) becomes the baseline once it has lasted this long. */
  adoptAfterMs: number;
  /** A repair undone again within this window counts as a fight; after maxAttempts of them flinch stops. */
  conflictWindowMs: number;
  maxAttempts: number;
  /** At most this many repair actions a minute, whatever happens. */
  maxActionsPerMinute: number;
  /** Damage first seen up to this long after a migration signal is the migration's (ms). */
  repairWindowMs: number;
  /** …and up to this long before it: a migration's first signal can come just after its damage (ms). */
  lookbackMs: number;
  /** Install canaries (mode `on` only) so that a wholesale flush can be told from a piecemeal change. */
  canaries: boolean;
  /** After a migration, a guest clock this far from the host's (ms) is brought back (see healClock). */
  clockHealMs: number;
}

export const DEFAULT_SAFETY_NET_OPTIONS: SafetyNetOptions = {
  mode: 'dry-run',
  adoptAfterMs: 30_000,
  conflictWindowMs: 10_000,
  maxAttempts: 3,
  maxActionsPerMinute: 60,
  repairWindowMs: 60_000,
  lookbackMs: 5000,
  canaries: true,
  clockHealMs: 1000,
};

export const BASELINE_FILE = 'baseline.json';
export const BASELINE_VERSION = 2;

/** One piece of state that differs from the baseline. */
export interface Loss {
  key: string;
  kind: 'firewall-table' | 'link-down' | 'mtu' | 'address' | 'route' | 'interface-missing';
  /** `lost`: something was taken away and nothing written in its place; `edited`: somebody wrote something. */
  shape: 'lost' | 'edited';
  detail: string;
  repair: ((dryRun: boolean) => Promise<string>) | null;
  firewallKey?: string;
  iface?: InterfaceState;
  address?: string;
}

/** A migration signal: the trigger that proved a migration, and when (monotonic ms). */
export interface MigrationSignal {
  kind: string;
  detail: string;
  atMs: number;
}

/** What is missing or changed in `current` compared with `baseline`, with the repair for each. Additions are not losses. */
export function findLosses(baseline: LiveState, current: LiveState): Loss[] {
  const losses: Loss[] = [];
  for (const [key, table] of Object.entries(baseline.firewall)) {
    const now = current.firewall[key];
    const change = compareTable(table, now);
    if (!change) continue;
    losses.push({
      key: `firewall ${key}`, kind: 'firewall-table', firewallKey: key, shape: change.shape, detail: change.detail,
      repair: change.shape === 'lost' && table.backend !== 'nftables'
        ? (dryRun) => restoreIptablesTable(table, now, change.lostChains, dryRun)
        : null,
    });
  }
  for (const [mac, wanted] of Object.entries(baseline.interfaces)) {
    const iface = current.interfaces[mac];
    if (!iface) {
      losses.push({ key: `interface ${mac}`, kind: 'interface-missing', shape: 'lost', detail: `no interface has MAC ${mac} (was ${wanted.name})`, repair: null });
      continue;
    }
    if (wanted.adminUp && !iface.adminUp) {
      losses.push({ key: `link ${mac}`, kind: 'link-down', shape: 'lost', iface, detail: `${iface.name} is down`, repair: (d) => setLinkUp(iface.name, d) });
    }
    if (wanted.mtu !== iface.mtu) {
      losses.push({ key: `mtu ${mac}`, kind: 'mtu', shape: 'lost', iface, detail: `${iface.name} mtu ${iface.mtu}, was ${wanted.mtu}`, repair: (d) => setMtu(iface.name, wanted.mtu, d) });
    }
    for (const cidr of wanted.addresses.filter((a) => !iface.addresses.includes(a))) {
      losses.push({ key: `address ${mac} ${cidr}`, kind: 'address', shape: 'lost', iface, address: cidr, detail: `${cidr} missing on ${iface.name}`, repair: (d) => addAddress(iface.name, cidr, d) });
    }
    for (const route of wanted.routes) {
      if (iface.routes.some((r) => r.family === route.family && r.destination === route.destination && r.gateway === route.gateway)) continue;
      losses.push({
        key: `route ${mac} ${route.family} ${route.destination}`, kind: 'route', shape: 'lost', iface,
        detail: `${route.destination}${route.gateway ? ` via ${route.gateway}` : ''} missing on ${iface.name}`,
        repair: (d) => addRoute(iface.name, route, d),
      });
    }
  }
  return losses;
}

/** Order of repair: firewall first (nothing unfiltered gets through), then the link, addresses, routes. */
const REPAIR_ORDER: Loss['kind'][] = ['firewall-table', 'link-down', 'mtu', 'address', 'route', 'interface-missing'];

/** The piece of the baseline a loss is in: its firewall table, or its interface (by MAC). */
function pieceOf(loss: Loss): string {
  return loss.firewallKey ?? loss.key.split(' ')[1]!;
}

function seenKey(loss: Loss): string {
  return `${loss.shape} ${loss.key}`;
}

/** How many migration signals are remembered: enough for a burst of them, never a growing list. */
const MAX_SIGNALS = 64;
/** How soon a repair that read as lost right after it was applied is looked at again. */
const VERIFY_RETRY_MS = 1000;

/**
 * The one part of flinch that changes the guest. It keeps a last-known-good baseline (per interface by MAC, per
 * firewall table), taken from live state when the agent starts, and puts back what was lost, only when the loss is
 * explained by a migration: first seen within a window around migration evidence (see isMigrationEvidence). Damage
 * with no migration to explain it is an administrator's or another manager's doing: it is left alone, reported, and
 * adopted as the new baseline once it has lasted. A table somebody wrote to is never rewritten, migration or not.
 * Every action is checked before it is applied, verified after, rate limited, and audited; a repair undone again
 * and again ends in `conflict`, not in a fight.
 */
export class SafetyNet {
  private baseline: LiveState | null = null;
  private readonly actions: Array<RemediationAction & { monotonicMs: number }> = [];
  private readonly repairs = new Map<string, { last: number; attempts: number; conflicted: boolean }>();
  /** The second look at a repair that read as lost right after it was applied (verifyAgainSoon), while it is due. */
  private verifyRecheck: { done: Promise<void>; timer: NodeJS.Timeout; cancel: () => void } | null = null;
  /**
   * When each current loss was first seen (monotonic ms), by key and shape: a table edited and later taken away is a
   * new loss, seen when it was taken. Forgotten once it is gone, or adopted.
   */
  private readonly firstSeen = new Map<string, number>();
  private readonly signals: MigrationSignal[] = [];
  /** Changes left alone, waiting out --adopt-after: which, since when, and the state they were last seen in. */
  private pendingAdoption: { signature: string; since: number; losses: Loss[]; seen: LiveState } | null = null;
  private evaluating: Promise<void> | null = null;
  private again = false;
  private pendingScope: CheckScope | null = null;
  private recheckTimer: NodeJS.Timeout | null = null;
  private readonly recentActions: number[] = [];
  /** Losses already reported (left alone, or that flinch cannot or, in dry-run, will not repair); again once cleared. */
  private readonly reported = new Set<string>();
  private lastCanaries: string[] = [];
  /** Set by stop(): no check runs after it, so that removing the canaries does not make one put them back. */
  private stopping = false;
  /** Tables and interfaces that appeared, by key, with when (monotonic ms): learnt once they have lasted. */
  private readonly pendingAdditions = new Map<string, number>();
  private recheckDueMs: number | null = null;
  private actionListener: (action: RemediationAction) => void = () => undefined;

  constructor(
    readonly options: SafetyNetOptions,
    private readonly state: StateDir | null,
    private readonly log: (line: string) => void,
    private readonly capture: () => Promise<LiveState> = captureLiveState,
    private readonly captureFirewall: () => Promise<FirewallState> = captureFirewallState,
  ) {}

  /**
   * Takes the baseline from live state. A stored one is never reused: after a restart or a reboot it may describe a
   * network that no longer exists, and restoring it would undo whatever changed meanwhile.
   */
  async init(): Promise<void> {
    if (this.options.mode === 'off') return;
    this.baseline = await this.capture();
    this.save();
    await this.tendCanaries(this.baseline);
  }

  /** Told of every action as it is recorded: left alone, dry run or carried out. */
  onAction(listener: (action: RemediationAction) => void): void {
    this.actionListener = listener;
  }

  get currentBaseline(): LiveState | null {
    return this.baseline;
  }

  /**
   * A migration was proven; damage seen around it may be repaired. Damage after it comes with observations of its
   * own, which ask for a check; only damage already seen (and left alone) needs a look now. So a migration with
   * nothing lost costs no reading at all, at the moment the guest has the least time to spare (a TCG guest just
   * resumed: every process spawned then delays its answers to the harness's probes).
   */
  migrationSignal(signal: MigrationSignal): Promise<void> {
    this.signals.push(signal);
    if (this.signals.length > MAX_SIGNALS) this.signals.shift();
    return this.firstSeen.size > 0 || this.evaluating ? this.check('all') : Promise.resolve();
  }

  /** Something may have changed: reads it, and repairs what a migration explains. */
  check(scope: CheckScope = 'all'): Promise<void> {
    if (this.options.mode === 'off' || !this.baseline || this.stopping) return Promise.resolve();
    this.pendingScope = this.pendingScope === null || this.pendingScope === scope ? scope : 'all';
    if (this.evaluating) {
      this.again = true;
      return this.evaluating;
    }
    this.evaluating = (async () => {
      do {
        this.again = false;
        const pending = this.pendingScope ?? 'all';
        this.pendingScope = null;
        // A failed evaluation must not swallow the checks asked for while it ran: the loss that made it fail (a
        // ruleset flushed under it) is usually what the next one is for.
        await this.evaluate(pending).catch((error: Error) => this.log(`safety net: ${error.message}`));
      } while (this.again);
    })()
      .finally(() => {
        this.evaluating = null;
      });
    return this.evaluating;
  }

  /**
   * Waits for any check in progress, and for the second look at a repair that read as lost (verifyAgainSoon): an
   * episode's report is made after it, or a fight the second look would have called a conflict is reported as a
   * failed repair (the flush loop's report under load).
   */
  async idle(): Promise<void> {
    while (this.evaluating || this.verifyRecheck) await (this.evaluating ?? this.verifyRecheck?.done);
  }

  private verifyAgainSoon(): void {
    if (this.verifyRecheck) return;
    let finish: (checked?: Promise<void>) => void = () => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const timer = setTimeout(() => {
      // Cleared before the check starts, so that a repair this check makes can ask for its own second look; the
      // check itself is `evaluating` from here on.
      this.verifyRecheck = null;
      finish(this.check());
    }, VERIFY_RETRY_MS);
    timer.unref();
    this.verifyRecheck = { done, timer, cancel: () => finish() };
  }

  /** What still differs from the baseline now and is the migration's to answer for (lost within a window). */
  async remainingLosses(): Promise<Loss[]> {
    if (!this.baseline) return [];
    return findLosses(this.baseline, await this.capture()).filter((l) => this.explainedBy(l) !== null);
  }

  actionsSince(monotonicFrom: number): RemediationAction[] {
    return this.actions.filter((a) => a.monotonicMs >= monotonicFrom).map(({ monotonicMs: _, ...action }) => action);
  }

  /** The remediation outcome for a set of actions, given what is still lost afterwards. */
  outcome(actions: readonly RemediationAction[], remaining: readonly Loss[]): RemediationOutcome {
    if (this.options.mode === 'off') return 'off';
    if (actions.some((a) => a.result === 'conflict')) return 'conflict';
    const repairs = actions.filter((a) => a.result !== 'left-alone');
    if (this.options.mode === 'dry-run') return repairs.length > 0 ? 'dry-run' : 'not-needed';
    // Announcements are courtesy, a convergence is a reading of what a repair did, and a skipped action changed
    // nothing: none decides whether the guest healed.
    // Of several attempts at one repair only the last counts: a route put back once its address is, after a first
    // try that came too early ("Nexthop has invalid gateway"), is repaired.
    const lastAttempts = new Map<string, RemediationAction>();
    for (const a of repairs) if (a.what !== 'announce' && a.what !== 'clock-converged' && a.result !== 'skipped') lastAttempts.set(`${a.what} ${a.target}`, a);
    const repaired = [...lastAttempts.values()];
    if (repaired.length === 0) return remaining.length === 0 ? 'not-needed' : 'failed';
    if (remaining.length === 0 && repaired.every((a) => a.result === 'ok')) return 'healed';
    return repaired.some((a) => a.result === 'ok') ? 'partial' : 'failed';
  }

  /**
   * Brings the guest clock back after a migration left it `offsetMs` from the host's (guest minus host, measured over
   * the collector connection). A time daemon that runs is asked to step (chrony: `chronyc makestep`; timesyncd: a
   * restart makes it sync at once; ntpd has no such request and is left to do it); with none, CLOCK_REALTIME is stepped
   * by the offset, as libvirt's guest-set-time does. Audited and rate-limited like every repair; dry-run says how.
   */
  async healClock(offsetMs: number, why: string): Promise<void> {
    if (this.options.mode === 'off' || this.stopping || Math.abs(offsetMs) < this.options.clockHealMs) return;
    const dryRun = this.options.mode === 'dry-run';
    const target = 'CLOCK_REALTIME';
    const reason = `${why}: the guest clock is ${(offsetMs / 1000).toFixed(3)} s ${offsetMs < 0 ? 'behind' : 'ahead of'} the host's`;
    if (!dryRun && !this.takeToken()) {
      this.record({ what: 'clock', target, why: reason, result: 'skipped', error: `rate limit of ${this.options.maxActionsPerMinute} actions a minute reached` });
      return;
    }
    const started = monotonicMs();
    const daemon = runningTimeDaemon();
    try {
      const command = daemon ? await askDaemonToStep(daemon, dryRun) : await stepRealtime(-offsetMs, dryRun);
      if (command === null) {
        this.record({ what: 'clock', target, why: reason, result: 'skipped', error: `${daemon} has no step-now request; left to ${daemon}`, durationMs: monotonicMs() - started });
        return;
      }
      this.record({ what: 'clock', target, why: `${reason}${daemon ? ` (asked ${daemon})` : ''}`, command, result: dryRun ? 'dry-run' : 'ok', durationMs: monotonicMs() - started });
    } catch (error) {
      this.record({ what: 'clock', target, why: reason, result: 'failed', error: (error as Error).message, durationMs: monotonicMs() - started });
    }
  }

  /**
   * The offset to the host showed the clock back where it belongs `afterMs` after it was stepped or a daemon was asked
   * to (null: not within `waitedMs`, so the daemon slews, or refused). Audited beside the step itself.
   */
  clockConverged(afterMs: number | null, waitedMs: number | null, offset?: { targetMs: number; lastMs: number | null }): void {
    if (afterMs !== null) {
      this.record({ what: 'clock-converged', target: 'CLOCK_REALTIME', why: `the offset to the host moved back by the step ${Math.round(afterMs)} ms after it was asked for`, result: 'ok', durationMs: afterMs });
    } else {
      const where = offset ? ` (to ${Math.round(offset.targetMs)} ms; last seen at ${offset.lastMs === null ? 'no reading' : `${Math.round(offset.lastMs)} ms`})` : '';
      this.record({ what: 'clock-converged', target: 'CLOCK_REALTIME', why: `the offset to the host did not move back by the step${where}`, result: 'failed', error: `not within ${Math.round((waitedMs ?? 0) / 1000)} s`, durationMs: waitedMs ?? 0 });
    }
  }

  /** Stops, and takes flinch's canaries out of the guest. */
  async stop(): Promise<void> {
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    if (this.verifyRecheck) {
      clearTimeout(this.verifyRecheck.timer);
      this.verifyRecheck.cancel();
      this.verifyRecheck = null;
    }
    this.stopping = true;
    await this.idle();
    if (this.options.mode !== 'on' || !this.options.canaries) return;
    try {
      for (const failure of await removeCanaries(await this.captureFirewall())) this.log(`safety net: could not remove a canary: ${failure}`);
    } catch (error) {
      this.log(`safety net: could not read the firewall to remove the canaries: ${(error as Error).message}`);
    }
  }

  private save(): void {
    if (this.baseline) this.state?.writeJson(BASELINE_FILE, BASELINE_VERSION, this.baseline);
  }

  /** The migration signal that explains a loss, if one does: first seen within [signal − lookback, signal + window]. */
  private explainedBy(loss: Loss): MigrationSignal | null {
    if (loss.shape !== 'lost') return null;
    const seen = this.firstSeen.get(seenKey(loss)) ?? monotonicMs();
    for (let i = this.signals.length - 1; i >= 0; i -= 1) {
      const signal = this.signals[i]!;
      if (seen >= signal.atMs - this.options.lookbackMs && seen <= signal.atMs + this.options.repairWindowMs) return signal;
    }
    return null;
  }

  /** Puts back canaries a flush took (only where they belong now), in mode `on`. */
  private async tendCanaries(state: FirewallState): Promise<void> {
    if (this.options.mode !== 'on' || !this.options.canaries) return;
    const gone = this.lastCanaries.filter((c) => !state.canaries.includes(c));
    if (gone.length > 0) this.log(`safety net: canary gone (${gone.join(', ')}): a wholesale flush`);
    try {
      const installed = await installMissingCanaries(state);
      this.lastCanaries = [...new Set([...state.canaries, ...installed])].sort();
    } catch (error) {
      this.log(`safety net: could not install canaries: ${(error as Error).message}`);
    }
  }

  /**
   * New interfaces and tables join the baseline once they have lasted --adopt-after, like any change: what a manager
   * creates for a moment (firewalld's `firewalld_policy_drop` while it reloads, which drops everything) must never be
   * learnt, or its removal would read as a loss and a migration window would bring it back.
   */
  private learnAdditions(current: LiveState, now: number): void {
    const baseline = this.baseline!;
    const present = new Set<string>();
    let learnt = false;
    const consider = (key: string, learn: () => void) => {
      present.add(key);
      const since = this.pendingAdditions.get(key) ?? now;
      this.pendingAdditions.set(key, since);
      if (now - since >= this.options.adoptAfterMs) {
        learn();
        this.pendingAdditions.delete(key);
        learnt = true;
      } else {
        this.recheckAt(since + this.options.adoptAfterMs);
      }
    };
    for (const [key, table] of Object.entries(current.firewall)) {
      if (!baseline.firewall[key]) consider(`firewall ${key}`, () => (baseline.firewall[key] = table));
    }
    for (const [mac, iface] of Object.entries(current.interfaces)) {
      if (!baseline.interfaces[mac]) consider(`interface ${mac}`, () => (baseline.interfaces[mac] = iface));
    }
    for (const key of this.pendingAdditions.keys()) if (!present.has(key)) this.pendingAdditions.delete(key);
    if (learnt) {
      this.save();
      this.log(`safety net: learnt new table(s) or interface(s) into the baseline`);
    }
  }

  /** Makes sure a check runs at `dueMs` (monotonic), when something pending becomes due. */
  private recheckAt(dueMs: number): void {
    if (this.recheckDueMs !== null && this.recheckDueMs <= dueMs && this.recheckTimer) return;
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    this.recheckDueMs = dueMs;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      this.recheckDueMs = null;
      void this.check();
    }, Math.max(10, dueMs - monotonicMs() + 10));
    this.recheckTimer.unref();
  }

  private async evaluate(scope: CheckScope): Promise<void> {
    const baseline = this.baseline!;
    // A firewall change needs only the firewall read again (interface changes come with their own checks): fewer
    // processes to start on the path from a flush to its repair.
    const current: LiveState = scope === 'firewall'
      ? { interfaces: baseline.interfaces, ...(await this.captureFirewall()) }
      : await this.capture();
    await this.tendCanaries(current);
    const losses = findLosses(baseline, current);
    const now = monotonicMs();
    const lostKeys = new Set(losses.map((l) => l.key));
    const seenKeys = new Set(losses.map(seenKey));
    for (const key of this.firstSeen.keys()) if (!seenKeys.has(key)) this.firstSeen.delete(key);
    for (const loss of losses) if (!this.firstSeen.has(seenKey(loss))) this.firstSeen.set(seenKey(loss), now);
    for (const [key, record] of this.repairs) {
      // Healthy for a whole conflict window: the fight, if there was one, is over.
      if (!lostKeys.has(key) && now - record.last > this.options.conflictWindowMs) this.repairs.delete(key);
    }
    for (const key of this.reported) if (!lostKeys.has(key)) this.reported.delete(key);
    this.learnAdditions(current, now);
    if (losses.length === 0) {
      this.pendingAdoption = null;
      return;
    }
    const explained: Array<{ loss: Loss; signal: MigrationSignal }> = [];
    const leftAlone: Loss[] = [];
    for (const loss of losses) {
      const signal = this.explainedBy(loss);
      if (signal) explained.push({ loss, signal });
      else leftAlone.push(loss);
    }
    for (const loss of leftAlone) {
      if (this.reported.has(loss.key)) continue;
      this.reported.add(loss.key);
      const why = loss.shape === 'edited'
        ? 'changed-outside-migration: somebody wrote to it; flinch never rewrites that'
        : 'changed-outside-migration: no migration evidence explains it';
      this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, result: 'left-alone' });
    }
    if (explained.length > 0) {
      const signal = explained[explained.length - 1]!.signal;
      const toRepair = this.healToPendingChanges(explained.map((e) => e.loss), current);
      if (toRepair.length > 0) await this.repair(toRepair, current, `lost around a migration (${signal.kind}: ${signal.detail})`);
    }
    if (leftAlone.length > 0) this.considerAdoption(leftAlone, current);
    else this.pendingAdoption = null;
  }

  /** Changes left alone that last become the baseline: the administrator meant them. */
  private considerAdoption(losses: Loss[], current: LiveState): void {
    const signature = losses.map((l) => l.key).sort().join('|');
    const now = monotonicMs();
    if (this.pendingAdoption?.signature !== signature) {
      this.pendingAdoption = { signature, since: now, losses, seen: current };
      this.log(`safety net: ${losses.length} change(s) with no migration to explain them: left alone; adopting in ${this.options.adoptAfterMs / 1000} s if they last`);
    } else if (now - this.pendingAdoption.since >= this.options.adoptAfterMs) {
      this.adopt(losses, current);
      this.pendingAdoption = null;
      this.log(`safety net: adopted the change(s) as the new baseline (${losses.map((l) => l.detail).join('; ')})`);
      return;
    } else {
      this.pendingAdoption = { ...this.pendingAdoption, losses, seen: current };
    }
    this.recheckAt(this.pendingAdoption.since + this.options.adoptAfterMs);
  }

  /** The pieces `losses` are in, as `seen` has them, become the baseline's. */
  private adopt(losses: Loss[], seen: LiveState): void {
    const baseline = this.baseline!;
    for (const loss of losses) {
      const piece = pieceOf(loss);
      if (loss.firewallKey) {
        const table = seen.firewall[piece];
        if (table) baseline.firewall[piece] = table;
        else delete baseline.firewall[piece];
      } else {
        const iface = seen.interfaces[piece];
        if (iface) baseline.interfaces[piece] = iface;
        else delete baseline.interfaces[piece];
      }
    }
    this.save();
    // Adopted: the next difference in these pieces is a new one, reported and timed afresh.
    for (const loss of losses) {
      this.firstSeen.delete(seenKey(loss));
      this.reported.delete(loss.key);
    }
  }

  /**
   * A piece somebody changed shortly before a migration took it is healed to that change, not to the older baseline:
   * the change was still waiting out --adopt-after, but it was the administrator's (it was left alone for having no
   * migration to explain it), and a migration does not make it less meant. Such pieces are adopted as they were last
   * seen, and their losses found again against that; the other losses are returned as they are.
   */
  private healToPendingChanges(losses: Loss[], current: LiveState): Loss[] {
    const pending = this.pendingAdoption;
    if (!pending) return losses;
    const taken = new Set(losses.map(pieceOf));
    const changed = pending.losses.filter((loss) => taken.has(pieceOf(loss)));
    if (changed.length === 0) return losses;
    this.adopt(changed, pending.seen);
    this.pendingAdoption = null;
    const pieces = new Set(changed.map(pieceOf));
    this.log(`safety net: a migration took what had been changed just before it (${changed.map((l) => l.detail).join('; ')}): healing to that change, not to the older baseline`);
    // Only what is missing from that change goes back; anything written over it is somebody's, and a later check says so.
    const again = findLosses(this.baseline!, current).filter((loss) => pieces.has(pieceOf(loss)) && loss.shape === 'lost');
    return [...losses.filter((loss) => !pieces.has(pieceOf(loss))), ...again];
  }

  private async repair(losses: Loss[], current: LiveState, why: string): Promise<void> {
    const dryRun = this.options.mode === 'dry-run';
    const applied: Array<{ loss: Loss; started: number; command: string }> = [];
    const ordered = [...losses].sort((a, b) => REPAIR_ORDER.indexOf(a.kind) - REPAIR_ORDER.indexOf(b.kind));
    const announce: Array<{ iface: InterfaceState; cidr: string }> = [];
    // Lost nft tables go back together, in one transaction, each checked alone first.
    const nftBatch: Loss[] = [];
    const flushBatch = async () => {
      if (nftBatch.length > 0) await this.applyNftBatch(nftBatch.splice(0), current, why, applied, dryRun);
    };
    for (const loss of ordered) {
      if (loss.kind !== 'firewall-table') await flushBatch();
      const isNft = loss.firewallKey?.startsWith('nftables ') ?? false;
      if (!loss.repair && !isNft) {
        if (!this.reported.has(loss.key)) {
          this.reported.add(loss.key);
          this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, result: 'skipped', error: 'nothing to repair it with' });
        }
        continue;
      }
      if (dryRun) {
        // Nothing is applied, so nothing can be undone: say once what would be done, and count no attempts.
        if (this.reported.has(loss.key)) continue;
        this.reported.add(loss.key);
        if (isNft) nftBatch.push(loss);
        else await this.apply(loss, current, why, true, applied);
        continue;
      }
      const record = this.repairs.get(loss.key) ?? { last: -Infinity, attempts: 0, conflicted: false };
      if (record.conflicted) continue;
      const now = monotonicMs();
      if (now - record.last < this.options.conflictWindowMs) record.attempts += 1;
      else record.attempts = 1;
      if (record.attempts > this.options.maxAttempts) {
        record.conflicted = true;
        this.repairs.set(loss.key, record);
        this.log(`safety net: ${loss.key} was undone ${this.options.maxAttempts} times within ${this.options.conflictWindowMs / 1000} s; stopping (conflict)`);
        this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, result: 'conflict', error: `undone again ${this.options.maxAttempts} times; something else keeps changing it` });
        continue;
      }
      if (!this.takeToken()) {
        this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, result: 'skipped', error: `rate limit of ${this.options.maxActionsPerMinute} actions a minute reached` });
        continue;
      }
      record.last = now;
      this.repairs.set(loss.key, record);
      if (isNft) {
        nftBatch.push(loss);
        continue;
      }
      await this.apply(loss, current, why, false, applied);
      if (loss.kind === 'address' && loss.iface && loss.address) announce.push({ iface: loss.iface, cidr: loss.address });
    }
    await flushBatch();
    await this.verify(applied, current, why);
    if (applied.some(({ loss }) => loss.kind === 'firewall-table')) await this.tendCanaries(await this.captureFirewall());
    if (ordered.some((l) => l.kind === 'link-down')) {
      for (const [mac, iface] of Object.entries(this.baseline!.interfaces)) {
        for (const cidr of iface.addresses) if (!announce.some((a) => a.cidr === cidr)) announce.push({ iface: { ...iface, mac }, cidr });
      }
    }
    for (const { iface, cidr } of announce) {
      const started = monotonicMs();
      try {
        const command = await announceAddress(iface, cidr, dryRun);
        this.record({ what: 'announce', target: `${iface.name} ${cidr}`, why: 'tell the neighbours where the restored address lives', result: dryRun ? 'dry-run' : 'ok', command, durationMs: monotonicMs() - started });
      } catch (error) {
        this.record({ what: 'announce', target: `${iface.name} ${cidr}`, why: 'tell the neighbours where the restored address lives', result: 'skipped', error: (error as Error).message, durationMs: monotonicMs() - started });
      }
    }
  }

  private async applyNftBatch(losses: Loss[], current: LiveState, why: string, applied: Array<{ loss: Loss; started: number; command: string }>, dryRun: boolean): Promise<void> {
    const started = monotonicMs();
    const fail = (loss: Loss, error: string) => this.record({
      what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`,
      beforeHash: current.firewall[loss.firewallKey!]?.hash ?? null, durationMs: monotonicMs() - started, result: 'failed', error,
    });
    try {
      const { command, refused } = await restoreNftTables(losses.map((loss) => this.baseline!.firewall[loss.firewallKey!]!), dryRun);
      for (const loss of losses) {
        const reason = refused.get(loss.firewallKey!);
        if (reason !== undefined) fail(loss, `nft -c refused it: ${reason}`);
        else if (dryRun) this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, beforeHash: current.firewall[loss.firewallKey!]?.hash ?? null, command: command ?? undefined, durationMs: monotonicMs() - started, result: 'dry-run' });
        else applied.push({ loss, started, command: command! });
      }
    } catch (error) {
      for (const loss of losses) fail(loss, (error as Error).message);
    }
  }

  /** Applies one repair (or, in dry-run, only checks it). Failures are recorded at once; successes wait for verify(). */
  private async apply(loss: Loss, current: LiveState, why: string, dryRun: boolean, applied: Array<{ loss: Loss; started: number; command: string }>): Promise<void> {
    const started = monotonicMs();
    const beforeHash = loss.firewallKey ? current.firewall[loss.firewallKey]?.hash ?? null : null;
    try {
      const command = await loss.repair!(dryRun);
      if (dryRun) {
        this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, beforeHash, command, durationMs: monotonicMs() - started, result: 'dry-run' });
      } else {
        applied.push({ loss, started, command });
      }
    } catch (error) {
      this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, beforeHash, durationMs: monotonicMs() - started, result: 'failed', error: (error as Error).message });
    }
  }

  /** One fresh reading after all repairs: each applied repair is ok only if its piece is no longer lost. */
  private async verify(applied: Array<{ loss: Loss; started: number; command: string }>, current: LiveState, why: string): Promise<void> {
    if (applied.length === 0) return;
    // Firewall-only repairs are verified by re-reading just the firewall: the interfaces cost ~75 ms more.
    const firewallOnly = applied.every(({ loss }) => loss.firewallKey);
    const after: LiveState = firewallOnly ? { interfaces: this.baseline!.interfaces, ...(await this.captureFirewall()) } : await this.capture();
    const stillLost = new Set(findLosses(this.baseline!, after).filter((l) => l.shape === 'lost').map((l) => l.key));
    // Lost again between the write and this reading: another writer (a flush loop) may be at work, and the next of
    // its flushes can change nothing the monitors see (an empty table flushed again). Look again soon, so the repair
    // is retried and counted, and a fight ends in conflict rather than in silence.
    if (applied.some(({ loss }) => stillLost.has(loss.key))) this.verifyAgainSoon();
    for (const { loss, started, command } of applied) {
      const failed = stillLost.has(loss.key);
      this.record({
        what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, command,
        beforeHash: loss.firewallKey ? current.firewall[loss.firewallKey]?.hash ?? null : null,
        afterHash: loss.firewallKey ? after.firewall[loss.firewallKey]?.hash ?? null : null,
        durationMs: monotonicMs() - started,
        result: failed ? 'failed' : 'ok',
        ...(failed ? { error: 'applied, but it still reads as lost' } : {}),
      });
    }
  }

  private takeToken(): boolean {
    const now = monotonicMs();
    while (this.recentActions.length > 0 && now - this.recentActions[0]! > 60_000) this.recentActions.shift();
    if (this.recentActions.length >= this.options.maxActionsPerMinute) return false;
    this.recentActions.push(now);
    return true;
  }

  private record(action: Partial<RemediationAction> & Pick<RemediationAction, 'what' | 'target' | 'why' | 'result'>): void {
    const full: RemediationAction & { monotonicMs: number } = {
      beforeHash: null, afterHash: null, durationMs: 0, ...action, at: stampNow(), monotonicMs: monotonicMs(),
    };
    full.durationMs = Math.round(full.durationMs * 100) / 100;
    this.actions.push(full);
    if (this.actions.length > 10_000) this.actions.splice(0, 1000);
    // The why goes in the log line too: an administrator reading the journal must see what licensed a change.
    this.log(`safety net: ${full.result}: ${full.what} ${full.target}${full.error ? ` (${full.error})` : ''}: ${full.why}`);
    this.actionListener(full);
  }
}
