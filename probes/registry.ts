import type { Probe } from './probe.js';
import { RtnetlinkLinkProbe } from './link/rtnetlink-link-probe.js';
import { ClockProbe } from './clock/clock-probe.js';

/**
 * Every probe flinch knows, by name. The agent core iterates this list and never names a probe itself, so adding one
 * is one file plus one line here.
 */
export const PROBE_FACTORIES: Readonly<Record<string, () => Probe>> = {
  link: () => new RtnetlinkLinkProbe(),
  clock: () => new ClockProbe(),
};

export function createProbes(names: readonly string[] = Object.keys(PROBE_FACTORIES)): Probe[] {
  return names.map((name) => {
    const factory = PROBE_FACTORIES[name];
    if (!factory) throw new Error(`unknown probe "${name}" (known: ${Object.keys(PROBE_FACTORIES).join(', ')})`);
    return factory();
  });
}
