import type { ObservationOf, StaleInterfaceRef } from '../../contract/observation.js';
import { stampNow } from '../clock/read-clocks.js';
import { diffRules, type NormalizedRuleset } from './ruleset.js';

const ALL_DIGITS = /^\d+$/;

/**
 * Turns successive readings of one ruleset into observations: what changed, whether flinch's canaries survived, and
 * which interface-bound rules now point at the wrong interface. Pure bookkeeping; it reads nothing itself.
 */
export class RulesetTracker {
  private previous: NormalizedRuleset | null = null;
  private readonly expectedCanaries = new Set<string>();
  /** The interface name each nft rule (by table, chain, handle, key) matched when first seen with a name. */
  private readonly writtenFor = new Map<string, string>();
  private lastStale = '';

  constructor(private readonly family?: 'ipv4' | 'ipv6') {}

  get current(): NormalizedRuleset | null {
    return this.previous;
  }

  /** Records a reading; returns an observation when something a guest could care about differs from the last one. */
  update(next: NormalizedRuleset, trigger: ObservationOf<'firewall'>['trigger']): ObservationOf<'firewall'> | null {
    const previous = this.previous;
    this.previous = next;
    const missing = [...this.expectedCanaries].filter((c) => !next.canaries.includes(c));
    for (const canary of next.canaries) this.expectedCanaries.add(canary);
    const canary: ObservationOf<'firewall'>['canary'] =
      missing.length > 0 ? 'missing' : this.expectedCanaries.size === 0 ? 'not-installed' : 'present';
    // A canary reported missing is expected again only once something puts it back.
    for (const c of missing) this.expectedCanaries.delete(c);

    const stale = this.staleRefs(next);
    const staleKey = JSON.stringify(stale);
    const staleChanged = staleKey !== this.lastStale;
    this.lastStale = staleKey;

    if (previous && previous.hash === next.hash && missing.length === 0 && !staleChanged) return null;
    const { added, removed } = previous ? diffRules(previous.rules, next.rules) : { added: [], removed: [] };
    const observation: ObservationOf<'firewall'> = {
      kind: 'firewall',
      backend: next.backend,
      hash: next.hash,
      previousHash: previous?.hash ?? null,
      rules: next.rules.length,
      added,
      removed,
      canary,
      staleInterfaceRefs: stale,
      trigger,
      at: stampNow(),
    };
    if (this.family) observation.family = this.family;
    return observation;
  }

  private staleRefs(ruleset: NormalizedRuleset): StaleInterfaceRef[] {
    const stale: StaleInterfaceRef[] = [];
    for (const rule of ruleset.rules) {
      if (rule.handle === null) continue;
      for (const ref of rule.interfaceRefs) {
        const id = `${rule.table} ${rule.chain} ${rule.handle} ${ref.key}`;
        const original = this.writtenFor.get(id) ?? null;
        if (ALL_DIGITS.test(ref.value) || (original !== null && original !== ref.value)) {
          stale.push({ table: rule.table, chain: rule.chain, handle: rule.handle, key: ref.key, writtenFor: original, now: ref.value });
        } else if (original === null) {
          this.writtenFor.set(id, ref.value);
        }
      }
    }
    return stale;
  }
}
