/**
 * A log that says each kind of problem at most `perWindow` times a window, then once how many it left out: a flood of
 * bad frames must be visible without filling the disk.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, { start: number; said: number; suppressed: number }>();

  constructor(
    private readonly log: (line: string) => void,
    private readonly perWindow = 5,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  say(kind: string, line: string): void {
    const now = this.now();
    let window = this.windows.get(kind);
    if (!window || now - window.start >= this.windowMs) {
      if (window && window.suppressed > 0) this.log(`${kind}: ${window.suppressed} more like this in the last ${Math.round(this.windowMs / 1000)} s`);
      window = { start: now, said: 0, suppressed: 0 };
      this.windows.set(kind, window);
    }
    if (window.said < this.perWindow) {
      window.said += 1;
      this.log(line);
    } else {
      window.suppressed += 1;
    }
  }
}
