import { createRtNetlink, type RtNetlinkSocket } from '../../system/rtnetlink.js';

/**
 * Runs a dump on its own short-lived socket. A dump's multipart reply must not share a socket with multicast
 * subscriptions: netlink@0.3.0 treats a notification that lands between the parts (a migration's NOTIFY_PEERS burst
 * does exactly that) as the end of the dump and fails it with "Multipart message not terminated properly".
 */
export async function withDumpSocket<T>(dump: (socket: RtNetlinkSocket) => Promise<T>): Promise<T> {
  const socket = createRtNetlink({ recvBufferSize: 1024 * 1024, sendBufferSize: 64 * 1024 });
  try {
    return await dump(socket);
  } finally {
    socket.socket.close();
  }
}
