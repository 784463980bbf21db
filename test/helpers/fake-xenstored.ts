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
  private readonly watches: Watch[] = [];
  private readonly toClient = new PassThrough();
  private readonly fromClient = new PassThrough();
  private readonly framer = new XsFramer();
  readonly requests: XsMessage[] = [];

  constructor(public domid: number) {
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
    this.send({ type: request.type, reqId: request.reqId, txId: 0, payload });
  }

  private error(request: XsMessage, code: string): void {
    this.send({ type: XsType.ERROR, reqId: request.reqId, txId: 0, payload: xsStrings(code) });
  }

  private handle(request: XsMessage): void {
    this.requests.push(request);
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
        return this.fire(watch, first); // xenstored fires every new watch once
      }
      default:
        return this.error(request, 'EINVAL');
    }
  }
}
