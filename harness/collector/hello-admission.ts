/**
 * How many connections may wait for their hello at once, in all and from one address: a peer that opens connections
 * and never says hello holds a slot for the hello timeout, and one address must not take every slot from the fleet.
 */
export class HelloAdmission {
  private waiting = 0;
  private readonly waitingByAddress = new Map<string, number>();

  constructor(
    private readonly maxWaiting: number,
    private readonly maxWaitingPerAddress: number,
    private readonly onChange: (waiting: number) => void = () => undefined,
  ) {}

  get pending(): number {
    return this.waiting;
  }

  /** Takes a slot for a connection from `address`; or says, as the refusal's detail, why there is none. */
  admit(address: string): string | null {
    if (this.waiting >= this.maxWaiting) return `more than ${this.maxWaiting} connections waiting for their hello`;
    if ((this.waitingByAddress.get(address) ?? 0) >= this.maxWaitingPerAddress) {
      return `more than ${this.maxWaitingPerAddress} connections from ${address} waiting for their hello`;
    }
    this.move(address, 1);
    return null;
  }

  /** The connection from `address` said hello, or went: its slot is free. */
  release(address: string): void {
    this.move(address, -1);
  }

  private move(address: string, delta: 1 | -1): void {
    this.waiting += delta;
    const n = (this.waitingByAddress.get(address) ?? 0) + delta;
    if (n > 0) this.waitingByAddress.set(address, n);
    else this.waitingByAddress.delete(address);
    this.onChange(this.waiting);
  }
}
