import { createRtNetlink, rt, type RtNetlinkSocket } from '../../system/rtnetlink.js';
import type { ObservationOf, Observation } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { watchInterfaceSetChanges } from '../link/interface-set-watcher.js';
import { withDumpSocket } from '../link/rtnetlink-dump.js';
import {
  addressKey, decodeAddress, decodeNeighbour, decodeRoute, routeKey, RT_TABLE_LOCAL, RTM_DELADDR, RTM_DELNEIGH,
  RTM_DELROUTE, RTM_NEWADDR, RTM_NEWNEIGH, RTM_NEWROUTE, type RawAddressMessage, type RawNeighbourMessage,
  type RawRouteMessage, type RtAction,
} from './decode-addressing.js';

export interface AddressingSnapshot {
  addresses: ObservationOf<'address'>[];
  routes: ObservationOf<'route'>[];
  neighbours: ObservationOf<'neighbour'>[];
}

/** After an interface comes or goes, the kernel's silent clean-up is done well within this. */
const RECONCILE_DELAY_MS = 100;

const GROUPS = ['IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_ROUTE', 'IPV6_ROUTE', 'NEIGH'] as const;

/**
 * Addresses, routes and neighbours, IPv4 and IPv6: a dump at start, then the rtnetlink groups. The kernel drops IPv4
 * routes without a message when their device goes away, so after every interface removal or re-creation the probe
 * re-reads addresses and routes and reports what vanished (or appeared) unannounced, marked `reconciled`.
 */
export class AddressingProbe implements Probe<AddressingSnapshot> {
  readonly name = 'addressing';
  private socket: RtNetlinkSocket | null = null;
  private stopWatcher: (() => void) | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private readonly addresses = new Map<string, ObservationOf<'address'>>();
  private readonly routes = new Map<string, ObservationOf<'route'>>();
  private readonly neighbours = new Map<string, ObservationOf<'neighbour'>>();

  async start(emit: (observation: Observation) => void): Promise<void> {
    let socket: RtNetlinkSocket;
    try {
      socket = createRtNetlink({ ref: true, recvBufferSize: 1024 * 1024, sendBufferSize: 64 * 1024 });
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot open an rtnetlink socket: ${(error as Error).message}`);
    }
    this.socket = socket;
    socket.socket.on('error', (error) => {
      emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() });
      this.scheduleReconcile(emit); // an overrun loses messages: re-read to find out what they were
    });
    socket.socket.on('message', (messages) => {
      for (const message of messages) {
        const action: RtAction | null =
          message.type === RTM_NEWADDR || message.type === RTM_NEWROUTE || message.type === RTM_NEWNEIGH ? 'new'
            : message.type === RTM_DELADDR || message.type === RTM_DELROUTE || message.type === RTM_DELNEIGH ? 'del'
              : null;
        if (!action) continue;
        const parsed = rt.parseMessage(message.type, message.data);
        const observation = this.decode(action, parsed, false);
        if (observation) {
          this.record(observation);
          emit(observation);
        }
      }
    });
    for (const group of GROUPS) socket.addMembership(group);
    this.stopWatcher = watchInterfaceSetChanges(() => this.scheduleReconcile(emit));
    const at = stampNow();
    for (const observation of await this.dump()) {
      this.record({ ...observation, at });
      emit({ ...observation, at });
    }
  }

  async stop(): Promise<void> {
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    this.stopWatcher?.();
    this.socket?.socket.close();
    this.socket = null;
  }

  async snapshot(): Promise<AddressingSnapshot> {
    if (!this.socket) return split(await this.dump());
    return split([...this.addresses.values(), ...this.routes.values(), ...this.neighbours.values()]);
  }

  private decode(action: RtAction, parsed: { kind: string }, reconciled: boolean, at = stampNow()) {
    if (parsed.kind === 'address') return decodeAddress(action, parsed as unknown as RawAddressMessage, at, reconciled);
    if (parsed.kind === 'route') {
      const route = decodeRoute(action, parsed as unknown as RawRouteMessage, at, reconciled);
      return route && route.table !== RT_TABLE_LOCAL ? route : null;
    }
    if (parsed.kind === 'neighbor') return decodeNeighbour(action, parsed as unknown as RawNeighbourMessage, at);
    return null;
  }

  private async dump(): Promise<Array<ObservationOf<'address'> | ObservationOf<'route'> | ObservationOf<'neighbour'>>> {
    const [addresses, routes, neighbours] = await withDumpSocket(async (socket) => [
      await socket.getAddresses(), await socket.getRoutes(), await socket.getNeighbors(),
    ] as const);
    return [...addresses, ...routes, ...neighbours]
      .map((m) => this.decode('dump', m, false))
      .filter((o): o is ObservationOf<'address'> | ObservationOf<'route'> | ObservationOf<'neighbour'> => o !== null);
  }

  private record(o: ObservationOf<'address'> | ObservationOf<'route'> | ObservationOf<'neighbour'>): void {
    const [map, key] =
      o.kind === 'address' ? [this.addresses, addressKey(o)] as const
        : o.kind === 'route' ? [this.routes, routeKey(o)] as const
          : [this.neighbours, `${o.ifindex} ${o.address}`] as const;
    if (o.action === 'del') map.delete(key);
    else (map as Map<string, typeof o>).set(key, o);
  }

  private scheduleReconcile(emit: (observation: Observation) => void): void {
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    this.reconcileTimer = setTimeout(() => {
      this.reconcileTimer = null;
      void this.reconcile(emit).catch((error: Error) =>
        emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: `reconcile: ${error.message}`, at: stampNow() }),
      );
    }, RECONCILE_DELAY_MS);
  }

  /** Compares the kept state with a fresh dump and reports the difference as if the kernel had said it. */
  private async reconcile(emit: (observation: Observation) => void): Promise<void> {
    if (!this.socket) return;
    const fresh = (await this.dump()).filter((o): o is ObservationOf<'address'> | ObservationOf<'route'> => o.kind !== 'neighbour');
    const at = stampNow();
    const freshKeys = new Set(fresh.map((o) => (o.kind === 'address' ? `a ${addressKey(o)}` : `r ${routeKey(o)}`)));
    const vanished = [
      ...[...this.addresses.values()].filter((a) => !freshKeys.has(`a ${addressKey(a)}`)),
      ...[...this.routes.values()].filter((r) => !freshKeys.has(`r ${routeKey(r)}`)),
    ];
    for (const old of vanished) {
      const gone = { ...old, action: 'del' as const, reconciled: true, at };
      this.record(gone);
      emit(gone);
    }
    for (const o of fresh) {
      const known = o.kind === 'address' ? this.addresses.has(addressKey(o)) : this.routes.has(routeKey(o));
      if (known) continue;
      const appeared = { ...o, action: 'new' as const, reconciled: true, at };
      this.record(appeared);
      emit(appeared);
    }
  }
}

function split(all: Array<ObservationOf<'address'> | ObservationOf<'route'> | ObservationOf<'neighbour'>>): AddressingSnapshot {
  return {
    addresses: all.filter((o): o is ObservationOf<'address'> => o.kind === 'address'),
    routes: all.filter((o): o is ObservationOf<'route'> => o.kind === 'route'),
    neighbours: all.filter((o): o is ObservationOf<'neighbour'> => o.kind === 'neighbour'),
  };
}
