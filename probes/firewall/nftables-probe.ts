import { listRuleset } from '../../system/nft.js';
import { findExecutable } from '../../system/run-command.js';
import type { ObservationOf, NftCommit, Observation } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { watchInterfaceSetChanges } from '../link/interface-set-watcher.js';
import { CoalescedReader } from './coalesced-reader.js';
import { watchNftablesCommits } from './netfilter-events.js';
import { normalizeNftRuleset, type NormalizedRuleset } from './ruleset.js';
import { RulesetTracker } from './ruleset-tracker.js';

/**
 * The nftables ruleset, read with `nft -j list ruleset` and re-read when the kernel announces a committed
 * transaction (the NFNLGRP_NFTABLES group that `nft monitor` reads) or when an interface comes or goes (which can
 * leave `iif`/`oif` rules pointing at a dead index without any nftables event).
 */
export class NftablesProbe implements Probe<NormalizedRuleset | null> {
  readonly name = 'nftables';
  private readonly tracker = new RulesetTracker();
  private readonly stops: Array<() => void> = [];
  private lastCommit: NftCommit | null = null;

  async start(emit: (observation: Observation) => void): Promise<void> {
    if (!findExecutable('nft')) throw new ProbeUnavailableError(this.name, 'nft is not installed');
    const failed = (error: Error) =>
      emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() });
    const reader = new CoalescedReader<ObservationOf<'firewall'>['trigger']>(async (trigger) => {
      const observation = this.tracker.update(normalizeNftRuleset(await listRuleset()), trigger);
      if (observation && this.lastCommit) observation.committedBy = this.lastCommit;
      if (observation) emit(observation);
    }, failed);
    try {
      // Subscribe before the first reading, so that no change can fall between the two.
      this.stops.push(watchNftablesCommits((commit) => {
        if (commit) this.lastCommit = commit;
        void reader.trigger('event');
      }, (error) => {
        failed(error);
        reader.trigger('event'); // an overrun (ENOBUFS) may have eaten the event itself
      }));
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot join the nftables netlink group: ${(error as Error).message}`);
    }
    this.stops.push(watchInterfaceSetChanges(() => reader.trigger('event')));
    await reader.trigger('start');
  }

  async stop(): Promise<void> {
    for (const stop of this.stops.splice(0)) stop();
  }

  async snapshot(): Promise<NormalizedRuleset | null> {
    return this.tracker.current ?? (findExecutable('nft') ? normalizeNftRuleset(await listRuleset()) : null);
  }
}
