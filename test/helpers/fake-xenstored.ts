// An in-process fake of xenstored, declared as such: no Xen exists on this machine, so the xenstore probe's protocol
// is tested against this until the nested Xen lab gives it the real thing.
import { Duplex, PassThrough } from 'node:stream';
import { encodeXsMessage, splitXsStrings, XsFramer, XsType, xsStrings, type XsMessage } from '../../probes/xen/xenstore-client.js';

interface Watch {
  path: string;
  token: string;
}

export class FakeXenstored {
  readonly tree = new Map<string, string>();
  readonly watches: Watch[] = [];
  private readonly toClient = new PassThrough();
  private readonly fromClient = new PassThrough();
  private readonly framer = new XsFramer();
  readonly requests: XsMessage[] = [];
  /** Requests received and not yet answered. */
  private outstanding = 0;
  maxOutstanding = 0;
  /**
   * WATCH requests written while another request of the same connection was unanswered: Linux's /dev/xen/xenbus
   * deadlocks on those (see XenstoreClient), so a real guest would have hung here.
   */
  readonly watchesThatWouldDeadlock: string[] = [];

  /** `replyDelayMs` > 0 answers later, as a real xenstored does, so that requests can overlap. */
  constructor(public domid: number, private readonly replyDelayMs = 0) {
    this.fromClient.on('data', (chunk: Buffer) => {
      for (const message of this.framer.push(chunk)) this.handle(message);
    });
  }

  /** The guest's end of the connection, as /dev/xen/xenbus would be. */
  clientStream(): Duplex {
    return Duplex.from({ readable: this.toClient, writable: this.fromClient });
  }

  home(): string {
    return `/local/domain/${this.domid}`;
  }

  /** Writes a node, relative to the guest's home unless absolute, and fires the watches that cover it. */
  set(nodePath: string, value: string): void {
    const absolute = this.absolute(nodePath);
    this.tree.set(absolute, value);
    for (const watch of this.watches) if (absolute.startsWith(this.absolute(watch.path))) this.fire(watch, nodePath);
  }

  /** What a migration looks like from xenstore: the guest's subtree moves to a new domid and the kernel re-registers its watches. */
  migrate(newDomid: number): void {
    const oldHome = this.home();
    this.domid = newDomid;
    for (const [key, value] of [...this.tree]) {
      if (!key.startsWith(`${oldHome}/`)) continue;
      this.tree.delete(key);
      this.tree.set(`${this.home()}${key.slice(oldHome.length)}`, value);
    }
    this.tree.set(`${this.home()}/domid`, String(newDomid));
    for (const watch of this.watches) this.fire(watch, watch.path);
  }

  private absolute(nodePath: string): string {
    return nodePath.startsWith('/') ? nodePath : `${this.home()}/${nodePath}`;
  }

  private fire(watch: Watch, nodePath: string): void {
    this.send({ type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: xsStrings(nodePath, watch.token) });
  }

  private send(message: XsMessage): void {
    this.toClient.write(encodeXsMessage(message));
  }

  private reply(request: XsMessage, payload: Buffer): void {
    this.answer({ type: request.type, reqId: request.reqId, txId: 0, payload });
  }

  private error(request: XsMessage, code: string): void {
    this.answer({ type: XsType.ERROR, reqId: request.reqId, txId: 0, payload: xsStrings(code) });
  }

  private answer(message: XsMessage): void {
    const deliver = () => {
      this.outstanding -= 1;
      this.send(message);
    };
    if (this.replyDelayMs > 0) setTimeout(deliver, this.replyDelayMs);
    else deliver();
  }

  private handle(request: XsMessage): void {
    this.requests.push(request);
    if (request.type === XsType.WATCH && this.outstanding > 0) this.watchesThatWouldDeadlock.push(splitXsStrings(request.payload)[0] ?? '');
    this.outstanding += 1;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    const [first = '', second = ''] = splitXsStrings(request.payload);
    switch (request.type) {
      case XsType.READ: {
        const value = this.tree.get(this.absolute(first));
        return value === undefined ? this.error(request, 'ENOENT') : this.reply(request, Buffer.from(value));
      }
      case XsType.DIRECTORY: {
        const prefix = `${this.absolute(first)}/`;
        const children = new Set<string>();
        for (const key of this.tree.keys()) if (key.startsWith(prefix)) children.add(key.slice(prefix.length).split('/')[0]!);
        return children.size === 0 ? this.error(request, 'ENOENT') : this.reply(request, xsStrings(...children));
      }
      case XsType.WATCH: {
        const watch = { path: first, token: second };
        this.watches.push(watch);
        this.reply(request, xsStrings('OK'));
        // xenstored fires every new watch once, after its answer
        if (this.replyDelayMs > 0) setTimeout(() => this.fire(watch, first), this.replyDelayMs);
        else this.fire(watch, first);
        return;
      }
      case XsType.UNWATCH: {
        const index = this.watches.findIndex((w) => w.path === first && w.token === second);
        if (index < 0) return this.error(request, 'ENOENT');
        this.watches.splice(index, 1);
        return this.reply(request, xsStrings('OK'));
      }
      default:
        return this.error(request, 'EINVAL');
    }
  }
}
