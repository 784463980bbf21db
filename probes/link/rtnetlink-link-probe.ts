import { createRtNetlink, rt, type RtNetlinkSocket } from '../../system/rtnetlink.js';
import type { LinkState, Observation } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { withDumpSocket } from './rtnetlink-dump.js';
import { decodeLinkMessage, decodeLinkState, RTM_DELLINK, RTM_NEWLINK, type RawLinkMessage } from './decode-link.js';

/** A replug or a bond failover sends bursts; a roomy receive buffer keeps the kernel from dropping them (ENOBUFS). */
const RECEIVE_BUFFER_BYTES = 1024 * 1024;
const SEND_BUFFER_BYTES = 64 * 1024;

export interface LinkSnapshot {
  links: LinkState[];
}

/**
 * Watches network interfaces through the rtnetlink LINK multicast group, after an initial dump. Every message is
 * reported, including the ones that change nothing visible: a migration's only trace is often an IFLA_EVENT
 * NOTIFY_PEERS or a carrier counter that moved.
 */
export class RtnetlinkLinkProbe implements Probe<LinkSnapshot> {
  readonly name = 'link';
  private socket: RtNetlinkSocket | null = null;
  private readonly links = new Map<number, LinkState>();

  async start(emit: (observation: Observation) => void): Promise<void> {
    let socket: RtNetlinkSocket;
    try {
      socket = createRtNetlink({ ref: true, recvBufferSize: RECEIVE_BUFFER_BYTES, sendBufferSize: SEND_BUFFER_BYTES });
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot open an rtnetlink socket: ${(error as Error).message}`);
    }
    this.socket = socket;
    socket.socket.on('error', (error) => {
      emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() });
    });
    // Read raw messages from the underlying socket: RtNetlinkSocket's parsed 'message' event loses NEW vs DEL.
    socket.socket.on('message', (messages) => {
      for (const message of messages) {
        if (message.type !== RTM_NEWLINK && message.type !== RTM_DELLINK) continue;
        const parsed = rt.parseMessage(message.type, message.data);
        if (parsed.kind !== 'link') continue;
        const observation = decodeLinkMessage(message.type, parsed as RawLinkMessage, stampNow());
        if (observation.action === 'del') this.links.delete(observation.link.ifindex);
        else this.links.set(observation.link.ifindex, observation.link);
        emit(observation);
      }
    });
    // Join the group before dumping so that nothing falls between the dump and the first event.
    socket.addMembership('LINK');
    const dump = await withDumpSocket((dumper) => dumper.getLinks());
    const at = stampNow();
    for (const message of dump) {
      const observation = decodeLinkMessage(RTM_NEWLINK, message as RawLinkMessage, at, true);
      if (!this.links.has(observation.link.ifindex)) this.links.set(observation.link.ifindex, observation.link);
      emit(observation);
    }
  }

  async stop(): Promise<void> {
    this.socket?.socket.close();
    this.socket = null;
  }

  async snapshot(): Promise<LinkSnapshot> {
    if (this.socket) return { links: [...this.links.values()].sort((a, b) => a.ifindex - b.ifindex) };
    // Not started: read the kernel's state directly with a one-shot dump.
    const dump = await withDumpSocket((dumper) => dumper.getLinks());
    return { links: dump.map((m) => decodeLinkState(m as RawLinkMessage)).sort((a, b) => a.ifindex - b.ifindex) };
  }
}
