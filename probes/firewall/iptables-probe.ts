import { iptablesAvailable, iptablesSave, legacyTablesPresent, type IpFamily, type IptablesVariant } from '../../system/iptables.js';
import type { ObservationOf, NftCommit, Observation } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { monotonicMs, stampNow } from '../clock/read-clocks.js';
import { CoalescedReader } from './coalesced-reader.js';
import { watchNftablesCommits } from './netfilter-events.js';
import { normalizeIptablesSave, type NormalizedRuleset } from './ruleset.js';
import { RulesetTracker } from './ruleset-tracker.js';

export interface IptablesProbeOptions {
  /** iptables-legacy has no change notifications; it is re-read this often while the guest is being watched closely. */
  legacyPollMs: number;
  /**
   * …and this often when nothing else has happened for LEGACY_ATTENTION_MS. Each read spawns iptables-legacy-save
   * from the agent, which was most of an idle agent's CPU at one read a second (BENCHMARKS.md, issue 19).
   */
  legacyIdlePollMs: number;
}

export const DEFAULT_IPTABLES_PROBE_OPTIONS: IptablesProbeOptions = { legacyPollMs: 1000, legacyIdlePollMs: 15_000 };

/**
 * How long the legacy poll stays at its fast rate after the agent last saw something happen. A migration's own
 * evidence (a pause, a link flap, Xen's suspend, a harness's announcement) comes first and what the guest does about
 * it (a script flushing its rules) follows within seconds: two minutes covers that and an episode's settling.
 */
export const LEGACY_ATTENTION_MS = 120_000;

interface Source {
  variant: IptablesVariant;
  family: IpFamily;
  tracker: RulesetTracker;
  reader: CoalescedReader<ObservationOf<'firewall'>['trigger']>;
}

const FAMILIES: IpFamily[] = ['ipv4', 'ipv6'];

/**
 * iptables, both back ends, both families. iptables-nft is re-read when nf_tables commits a transaction (no polling);
 * iptables-legacy, which has no notifications, is polled. It only reads: the safety net owns the canaries.
 */
export class IptablesProbe implements Probe<Record<string, NormalizedRuleset | null>> {
  readonly name = 'iptables';
  private readonly sources: Source[] = [];
  private readonly stops: Array<() => void> = [];
  private lastCommit: NftCommit | null = null;
  private legacyPoll: LegacyPoll | null = null;

  constructor(private readonly options: IptablesProbeOptions = DEFAULT_IPTABLES_PROBE_OPTIONS) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    const failed = (error: Error) =>
      emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() });
    for (const variant of ['nft', 'legacy'] as const) {
      for (const family of FAMILIES) {
        if (!iptablesAvailable(variant, family)) continue;
        const backend = variant === 'nft' ? 'iptables-nft' : 'iptables-legacy';
        const tracker = new RulesetTracker(family);
        const read = async () => normalizeIptablesSave(backend, family, await iptablesSave(variant, family));
        const reader = new CoalescedReader<ObservationOf<'firewall'>['trigger']>(async (trigger) => {
          const observation = tracker.update(await read(), trigger);
          if (observation && variant === 'nft' && this.lastCommit) observation.committedBy = this.lastCommit;
          if (observation) emit(observation);
        }, failed);
        this.sources.push({ variant, family, tracker, reader });
      }
    }
    if (this.sources.length === 0) throw new ProbeUnavailableError(this.name, 'neither iptables-nft nor iptables-legacy is installed');
    const nftSources = this.sources.filter((s) => s.variant === 'nft');
    if (nftSources.length > 0) {
      this.stops.push(
        watchNftablesCommits((commit) => {
          if (commit) this.lastCommit = commit;
          nftSources.forEach((s) => void s.reader.trigger('event'));
        }, (error) => {
          failed(error);
          nftSources.forEach((s) => s.reader.trigger('event'));
        }),
      );
    }
    const legacySources = this.sources.filter((s) => s.variant === 'legacy');
    if (legacySources.length > 0) {
      // A family with no legacy table and none before costs a file read, not a process. When its tables vanish
      // (a flush that unloads them, or a namespace reset) it is read once more, so the loss is reported.
      const poll = () => {
        for (const source of legacySources) {
          const hadRules = (source.tracker.current?.structure.length ?? 0) > 0;
          if (hadRules || legacyTablesPresent(source.family)) void source.reader.trigger('poll');
        }
      };
      this.legacyPoll = new LegacyPoll(poll, this.options);
      this.stops.push(() => this.legacyPoll?.stop());
    }
    await Promise.all(this.sources.map((source) => source.reader.trigger('start')));
  }

  /** Something happened that may come with a change legacy iptables cannot announce: read it now, then closely. */
  attend(): void {
    this.legacyPoll?.attend();
  }

  async stop(): Promise<void> {
    for (const stop of this.stops.splice(0)) stop();
    this.legacyPoll = null;
  }

  async snapshot(): Promise<Record<string, NormalizedRuleset | null>> {
    const out: Record<string, NormalizedRuleset | null> = {};
    for (const source of this.sources) out[`iptables-${source.variant} ${source.family}`] = source.tracker.current;
    return out;
  }
}

/**
 * The legacy back end's poll: every legacyIdlePollMs, and every legacyPollMs for LEGACY_ATTENTION_MS after attend(),
 * which also reads at once. One timer, re-armed after each read, so a change of rate takes effect immediately.
 */
export class LegacyPoll {
  private attentiveUntilMs = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly read: () => void,
    private readonly rates: Pick<IptablesProbeOptions, 'legacyPollMs' | 'legacyIdlePollMs'>,
    private readonly nowMs: () => number = monotonicMs,
  ) {
    this.arm();
  }

  /** The delay before the next read as things stand. */
  get currentIntervalMs(): number {
    return this.nowMs() < this.attentiveUntilMs ? this.rates.legacyPollMs : this.rates.legacyIdlePollMs;
  }

  attend(): void {
    if (this.stopped) return;
    const wasAttentive = this.nowMs() < this.attentiveUntilMs;
    this.attentiveUntilMs = this.nowMs() + LEGACY_ATTENTION_MS;
    // Already polling fast: the next read is at most legacyPollMs away, and a read per observation would be a spawn
    // per netlink event during a link flap.
    if (wasAttentive) return;
    this.read();
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.read();
      if (!this.stopped) this.arm();
    }, this.currentIntervalMs);
  }
}
