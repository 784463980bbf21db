import { createRtNetlink, rt } from '../../system/rtnetlink.js';
import { RTM_DELLINK, RTM_NEWLINK } from './decode-link.js';
import { withDumpSocket } from './rtnetlink-dump.js';

/**
 * Calls `onChange` when an interface appears or disappears. Rules and routes that refer to interfaces by index go
 * stale at exactly these moments, and the kernel says nothing about them itself: nft prints `iif 2` and IPv4 routes
 * are dropped silently (lab notes, NIC replug).
 */
export function watchInterfaceSetChanges(onChange: (change: { action: 'new' | 'del'; ifindex: number }) => void): () => void {
  const socket = createRtNetlink({ ref: true, recvBufferSize: 256 * 1024, sendBufferSize: 16 * 1024 });
  const known = new Set<number>();
  let primed = false;
  socket.socket.on('message', (messages) => {
    for (const message of messages) {
      if (message.type !== RTM_NEWLINK && message.type !== RTM_DELLINK) continue;
      const parsed = rt.parseMessage(message.type, message.data);
      const ifindex = parsed.kind === 'link' ? (parsed.data.index ?? 0) : 0;
      if (message.type === RTM_DELLINK) {
        known.delete(ifindex);
        onChange({ action: 'del', ifindex });
      } else if (!known.has(ifindex)) {
        known.add(ifindex);
        if (primed) onChange({ action: 'new', ifindex });
      }
    }
  });
  socket.addMembership('LINK');
  withDumpSocket((dumper) => dumper.getLinks())
    .then((links) => {
      for (const link of links) known.add(link.data.index ?? 0);
    })
    .catch(() => undefined) // without the initial list every interface counts as new once: a spare re-read, no harm
    .finally(() => {
      primed = true;
    });
  return () => socket.socket.close();
}
