import type { RemediationAction } from '../report/report-schema.js';
import type { RemediationOutcome } from '../episodes/verdict.js';
import { StateDir } from '../state/state-dir.js';
import { monotonicMs, stampNow } from '../../probes/clock/read-clocks.js';
import { NFT_CANARY_TABLE } from '../../probes/firewall/ruleset.js';
import { captureFirewall as captureFirewallState, captureFirewallHashes, captureLiveState, type InterfaceState, type LiveState } from './live-state.js';
import { addAddress, addRoute, announceAddress, restoreFirewallTable, restoreNftTables, setLinkUp, setMtu } from './restore.js';

export type RemediationMode = 'off' | 'dry-run' | 'on';

/** What a check must read again: everything, or only the firewall (after a firewall observation). */
export type CheckScope = 'all' | 'firewall';

export interface SafetyNetOptions {
  mode: RemediationMode;
  /** A change made outside any episode, with the canaries intact, becomes the baseline once it has lasted this long. */
  adoptAfterMs: number;
  /** A repair undone again within this window counts as a fight; after maxAttempts of them flinch stops. */
  conflictWindowMs: number;
  maxAttempts: number;
  /** At most this many repair actions a minute, whatever happens. */
  maxActionsPerMinute: number;
}

export const DEFAULT_SAFETY_NET_OPTIONS: SafetyNetOptions = {
  mode: 'dry-run',
  adoptAfterMs: 30_000,
  conflictWindowMs: 10_000,
  maxAttempts: 3,
  maxActionsPerMinute: 60,
};

export const BASELINE_FILE = 'baseline.json';
export const BASELINE_VERSION = 1;

/** One piece of state that differs from the baseline. */
export interface Loss {
  key: string;
  kind: 'firewall-table' | 'link-down' | 'mtu' | 'address' | 'route' | 'interface-missing';
  detail: string;
  repair: ((dryRun: boolean) => Promise<string>) | null;
  firewallKey?: string;
  iface?: InterfaceState;
  address?: string;
}

function isLiveState(value: unknown): value is LiveState {
  const v = value as LiveState | null;
  return typeof v === 'object' && v !== null && typeof v.interfaces === 'object' && typeof v.firewall === 'object';
}

/** What is missing from `current` compared with `baseline`, with the repair for each. Additions are not losses. */
export function findLosses(baseline: LiveState, current: LiveState): Loss[] {
  const losses: Loss[] = [];
  for (const [key, table] of Object.entries(baseline.firewall)) {
    const now = current.firewall[key];
    if (now?.hash === table.hash) continue;
    losses.push({
      key: `firewall ${key}`, kind: 'firewall-table', firewallKey: key,
      detail: now ? `${key} differs from the baseline` : `${key} is gone`,
      repair: (dryRun) => restoreFirewallTable(table, dryRun),
    });
  }
  for (const [mac, wanted] of Object.entries(baseline.interfaces)) {
    const iface = current.interfaces[mac];
    if (!iface) {
      losses.push({ key: `interface ${mac}`, kind: 'interface-missing', detail: `no interface has MAC ${mac} (was ${wanted.name})`, repair: null });
      continue;
    }
    if (wanted.adminUp && !iface.adminUp) {
      losses.push({ key: `link ${mac}`, kind: 'link-down', iface, detail: `${iface.name} is down`, repair: (d) => setLinkUp(iface.name, d) });
    }
    if (wanted.mtu !== iface.mtu) {
      losses.push({ key: `mtu ${mac}`, kind: 'mtu', iface, detail: `${iface.name} mtu ${iface.mtu}, was ${wanted.mtu}`, repair: (d) => setMtu(iface.name, wanted.mtu, d) });
    }
    for (const cidr of wanted.addresses.filter((a) => !iface.addresses.includes(a))) {
      losses.push({ key: `address ${mac} ${cidr}`, kind: 'address', iface, address: cidr, detail: `${cidr} missing on ${iface.name}`, repair: (d) => addAddress(iface.name, cidr, d) });
    }
    for (const route of wanted.routes) {
      if (iface.routes.some((r) => r.family === route.family && r.destination === route.destination && r.gateway === route.gateway)) continue;
      losses.push({
        key: `route ${mac} ${route.family} ${route.destination}`, kind: 'route', iface,
        detail: `${route.destination}${route.gateway ? ` via ${route.gateway}` : ''} missing on ${iface.name}`,
        repair: (d) => addRoute(iface.name, route, d),
      });
    }
  }
  return losses;
}

/** Order of repair: firewall first (nothing unfiltered gets through), then the link, addresses, routes. */
const REPAIR_ORDER: Loss['kind'][] = ['firewall-table', 'link-down', 'mtu', 'address', 'route', 'interface-missing'];

/**
 * The one part of flinch that changes the guest. It keeps a last-known-good baseline (per interface by MAC, per
 * firewall table), and puts back what was lost — but only inside a migration episode, or after a wholesale flush
 * proven by a missing canary. A change made outside any episode is an administrator's: flinch leaves it, and adopts
 * it as the new baseline once it has lasted. Every action is checked before it is applied, verified after, rate
 * limited, and audited; a repair undone again and again ends in `conflict`, not in a fight.
 */
export class SafetyNet {
  private baseline: LiveState | null = null;
  private readonly actions: Array<RemediationAction & { monotonicMs: number }> = [];
  private readonly repairs = new Map<string, { last: number; attempts: number; conflicted: boolean }>();
  private pendingAdoption: { signature: string; since: number } | null = null;
  private evaluating: Promise<void> | null = null;
  private again = false;
  private pendingScope: CheckScope | null = null;
  private adoptionTimer: NodeJS.Timeout | null = null;
  private readonly recentActions: number[] = [];
  /** Losses already reported that flinch cannot (or, in dry-run, will not) repair; reported again once cleared. */
  private readonly unrepairableReported = new Set<string>();

  constructor(
    readonly options: SafetyNetOptions,
    private readonly state: StateDir | null,
    private readonly log: (line: string) => void,
    private readonly capture: () => Promise<LiveState> = captureLiveState,
    private readonly captureHashes: (keys: readonly string[]) => Promise<Record<string, string>> = captureFirewallHashes,
    private readonly captureFirewall: () => Promise<LiveState['firewall']> = captureFirewallState,
  ) {}

  /** Loads the baseline, or builds it from live state when there is none or it is unusable. */
  async init(): Promise<void> {
    if (this.options.mode === 'off') return;
    const stored = this.state?.readJson(BASELINE_FILE, BASELINE_VERSION, isLiveState) ?? null;
    this.baseline = stored ?? (await this.capture());
    if (!stored) this.save();
  }

  get currentBaseline(): LiveState | null {
    return this.baseline;
  }

  /**
   * Something may have changed. `inEpisode` says whether a migration episode is open right now; a loss is repaired
   * only then, or when a canary proves a wholesale flush.
   */
  check(inEpisode: () => boolean, scope: CheckScope = 'all'): Promise<void> {
    if (this.options.mode === 'off' || !this.baseline) return Promise.resolve();
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
        await this.evaluate(inEpisode, pending).catch((error: Error) => this.log(`safety net: ${error.message}`));
      } while (this.again);
    })()
      .finally(() => {
        this.evaluating = null;
      });
    return this.evaluating;
  }

  /** Waits for any check in progress. */
  async idle(): Promise<void> {
    while (this.evaluating) await this.evaluating;
  }

  /** What still differs from the baseline now. */
  async remainingLosses(): Promise<Loss[]> {
    if (!this.baseline) return [];
    return findLosses(this.baseline, await this.capture());
  }

  actionsSince(monotonicFrom: number): RemediationAction[] {
    return this.actions.filter((a) => a.monotonicMs >= monotonicFrom).map(({ monotonicMs: _, ...action }) => action);
  }

  /** The remediation outcome for a set of actions, given what is still lost afterwards. */
  outcome(actions: readonly RemediationAction[], remaining: readonly Loss[]): RemediationOutcome {
    if (this.options.mode === 'off') return 'off';
    if (actions.some((a) => a.result === 'conflict')) return 'conflict';
    if (this.options.mode === 'dry-run') return actions.length > 0 ? 'dry-run' : 'not-needed';
    // Announcements are courtesy, and a skipped action changed nothing: neither decides whether the guest healed.
    // Of several attempts at one repair only the last counts: a route put back once its address is, after a first
    // try that came too early ("Nexthop has invalid gateway"), is repaired.
    const lastAttempts = new Map<string, RemediationAction>();
    for (const a of actions) if (a.what !== 'announce' && a.result !== 'skipped') lastAttempts.set(`${a.what} ${a.target}`, a);
    const repaired = [...lastAttempts.values()];
    if (repaired.length === 0) return remaining.length === 0 ? 'not-needed' : 'failed';
    if (remaining.length === 0 && repaired.every((a) => a.result === 'ok')) return 'healed';
    return repaired.some((a) => a.result === 'ok') ? 'partial' : 'failed';
  }

  stop(): void {
    if (this.adoptionTimer) clearTimeout(this.adoptionTimer);
  }

  private save(): void {
    if (this.baseline) this.state?.writeJson(BASELINE_FILE, BASELINE_VERSION, this.baseline);
  }

  private async evaluate(inEpisode: () => boolean, scope: CheckScope): Promise<void> {
    const baseline = this.baseline!;
    // A firewall change needs only the firewall read again (interface changes come with their own checks): fewer
    // processes to start on the path from a flush to its repair.
    const current: LiveState = scope === 'firewall'
      ? { interfaces: baseline.interfaces, firewall: await this.captureFirewall() }
      : await this.capture();
    const losses = findLosses(baseline, current);
    const lostKeys = new Set(losses.map((l) => l.key));
    for (const [key, record] of this.repairs) {
      // Healthy for a whole conflict window: the fight, if there was one, is over.
      if (!lostKeys.has(key) && monotonicMs() - record.last > this.options.conflictWindowMs) this.repairs.delete(key);
    }
    for (const key of this.unrepairableReported) if (!lostKeys.has(key)) this.unrepairableReported.delete(key);
    if (losses.length === 0) {
      this.pendingAdoption = null;
      return;
    }
    const canaryLost = losses.some((l) => l.kind === 'firewall-table' && l.firewallKey?.includes(NFT_CANARY_TABLE)) ||
      losses.some((l) => l.kind === 'firewall-table' && baseline.firewall[l.firewallKey!]?.hash.endsWith('+canary') && !current.firewall[l.firewallKey!]?.hash.endsWith('+canary'));
    if (inEpisode() || canaryLost) {
      this.pendingAdoption = null;
      await this.repair(losses, current, canaryLost && !inEpisode() ? 'wholesale flush proven by a missing canary' : 'lost during a migration episode');
      return;
    }
    this.considerAdoption(losses, current, inEpisode);
  }

  private considerAdoption(losses: Loss[], current: LiveState, inEpisode: () => boolean): void {
    const signature = losses.map((l) => l.key).sort().join('|');
    const now = monotonicMs();
    if (this.pendingAdoption?.signature !== signature) {
      this.pendingAdoption = { signature, since: now };
      this.log(`safety net: ${losses.length} change(s) outside any episode, canaries intact: treating as deliberate; adopting in ${this.options.adoptAfterMs / 1000} s if they last`);
    } else if (now - this.pendingAdoption.since >= this.options.adoptAfterMs) {
      this.baseline = current;
      this.save();
      this.pendingAdoption = null;
      this.log(`safety net: adopted the administrator's change as the new baseline (${losses.map((l) => l.detail).join('; ')})`);
      return;
    }
    if (this.adoptionTimer) clearTimeout(this.adoptionTimer);
    const wait = this.pendingAdoption.since + this.options.adoptAfterMs - now + 10;
    this.adoptionTimer = setTimeout(() => void this.check(inEpisode), Math.max(10, wait));
    this.adoptionTimer.unref();
  }

  private async repair(losses: Loss[], current: LiveState, why: string): Promise<void> {
    const dryRun = this.options.mode === 'dry-run';
    const applied: Array<{ loss: Loss; started: number; command: string }> = [];
    const ordered = [...losses].sort((a, b) => REPAIR_ORDER.indexOf(a.kind) - REPAIR_ORDER.indexOf(b.kind));
    const announce: Array<{ iface: InterfaceState; cidr: string }> = [];
    // Lost nft tables go back together, in one transaction: all or none, one check and one apply.
    const nftBatch: Loss[] = [];
    const flushBatch = async () => {
      if (nftBatch.length > 0) await this.applyNftBatch(nftBatch.splice(0), current, why, applied);
    };
    for (const loss of ordered) {
      if (loss.kind !== 'firewall-table') await flushBatch();
      if (!loss.repair) {
        if (!this.unrepairableReported.has(loss.key)) {
          this.unrepairableReported.add(loss.key);
          this.record({ what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, result: 'skipped', error: 'nothing to repair it with' });
        }
        continue;
      }
      if (dryRun) {
        // Nothing is applied, so nothing can be undone: say once what would be done, and count no attempts.
        if (this.unrepairableReported.has(loss.key)) continue;
        this.unrepairableReported.add(loss.key);
        await this.apply(loss, current, why, true, applied);
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
      if (loss.firewallKey?.startsWith('nftables ')) {
        nftBatch.push(loss);
        continue;
      }
      await this.apply(loss, current, why, false, applied);
      if (loss.kind === 'address' && loss.iface && loss.address) announce.push({ iface: loss.iface, cidr: loss.address });
    }
    await flushBatch();
    await this.verify(applied, current, why);
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

  private async applyNftBatch(losses: Loss[], current: LiveState, why: string, applied: Array<{ loss: Loss; started: number; command: string }>): Promise<void> {
    const started = monotonicMs();
    try {
      const command = await restoreNftTables(losses.map((loss) => this.baseline!.firewall[loss.firewallKey!]!), false);
      for (const loss of losses) applied.push({ loss, started, command });
    } catch (error) {
      for (const loss of losses) {
        this.record({
          what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`,
          beforeHash: current.firewall[loss.firewallKey!]?.hash ?? null, durationMs: monotonicMs() - started,
          result: 'failed', error: (error as Error).message,
        });
      }
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

  /** One fresh reading after all repairs: each applied repair is ok only if its piece matches the baseline again. */
  private async verify(applied: Array<{ loss: Loss; started: number; command: string }>, current: LiveState, why: string): Promise<void> {
    if (applied.length === 0) return;
    // Firewall-only repairs are verified by re-reading just those tables: the whole live state costs ~75 ms more.
    const firewallOnly = applied.every(({ loss }) => loss.firewallKey);
    let stillLost: Set<string>;
    let afterHashes: Record<string, string>;
    if (firewallOnly) {
      const keys = applied.map(({ loss }) => loss.firewallKey!);
      afterHashes = await this.captureHashes(keys);
      stillLost = new Set(applied.filter(({ loss }) => afterHashes[loss.firewallKey!] !== this.baseline!.firewall[loss.firewallKey!]?.hash).map(({ loss }) => loss.key));
    } else {
      const after = await this.capture();
      stillLost = new Set(findLosses(this.baseline!, after).map((l) => l.key));
      afterHashes = Object.fromEntries(Object.entries(after.firewall).map(([k, v]) => [k, v.hash]));
    }
    for (const { loss, started, command } of applied) {
      const failed = stillLost.has(loss.key);
      this.record({
        what: loss.kind, target: loss.key, why: `${why}: ${loss.detail}`, command,
        beforeHash: loss.firewallKey ? current.firewall[loss.firewallKey]?.hash ?? null : null,
        afterHash: loss.firewallKey ? afterHashes[loss.firewallKey] ?? null : null,
        durationMs: monotonicMs() - started,
        result: failed ? 'failed' : 'ok',
        ...(failed ? { error: 'applied, but verification shows it still differs from the baseline' } : {}),
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
    this.log(`safety net: ${full.result}: ${full.what} ${full.target}${full.error ? ` (${full.error})` : ''}`);
  }
}
