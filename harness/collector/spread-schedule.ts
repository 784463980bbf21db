/** How often the collector's periodic work (pings, time probes) runs a slice of the connections. */
export const SPREAD_TICK_MS = 50;

/**
 * Visits every member of a changing collection once per interval, a slice per tick, resuming where the last slice
 * ended (a snapshot per round, so members added mid-round wait for the next one). With 10 000 agents, pinging or
 * probing them all at once stalls the event loop for long enough to show in every agent's ack latency.
 */
export class SpreadSchedule {
  private round: unknown[] = [];
  private cursor = 0;
  private perTick = 0;
  private idleTicks = 0;

  constructor(private readonly intervalMs: number) {}

  due<T>(members: Iterable<T>): T[] {
    if (this.cursor >= this.round.length) {
      this.round = [...members];
      this.cursor = 0;
      this.perTick = Math.max(1, Math.ceil((this.round.length * SPREAD_TICK_MS) / this.intervalMs));
      // A small collection still waits for its interval: without this, three agents would be probed every tick.
      if (this.round.length * SPREAD_TICK_MS < this.intervalMs) {
        this.idleTicks = Math.round(this.intervalMs / SPREAD_TICK_MS) - this.round.length;
      }
    }
    if (this.idleTicks > 0) {
      this.idleTicks -= 1;
      return [];
    }
    const slice = this.round.slice(this.cursor, this.cursor + this.perTick) as T[];
    this.cursor += this.perTick;
    return slice;
  }
}
