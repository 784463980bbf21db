/**
 * Runs `read` for every trigger, but never two at once and never more than one behind: triggers that arrive while a
 * read is in flight fold into one follow-up read. A burst of netlink events costs at most two reads. The promise a
 * trigger returns settles when a read that began after it has finished, so its result reflects the trigger.
 */
export class CoalescedReader<Trigger> {
  private running = false;
  private pending: { trigger: Trigger; waiters: Array<() => void> } | null = null;

  constructor(
    private readonly read: (trigger: Trigger) => Promise<void>,
    private readonly onError: (error: Error) => void,
  ) {}

  trigger(trigger: Trigger): Promise<void> {
    return new Promise((resolve) => {
      if (this.running) {
        this.pending = { trigger, waiters: [...(this.pending?.waiters ?? []), resolve] };
        return;
      }
      this.run(trigger, [resolve]);
    });
  }

  private run(trigger: Trigger, waiters: Array<() => void>): void {
    this.running = true;
    void this.read(trigger)
      .catch((error: Error) => this.onError(error))
      .finally(() => {
        this.running = false;
        for (const wake of waiters) wake();
        const next = this.pending;
        this.pending = null;
        if (next) this.run(next.trigger, next.waiters);
      });
  }
}
