import dgram from 'node:dgram';

/** Probes are 16 bytes; anything larger is not one and gets no answer, so the responder amplifies nothing. */
export const ECHO_PROBE_BYTES = 16;
const MAX_ANSWERS_PER_SECOND = 2000;

/**
 * The guest half of the harness's blackout meter: echoes each probe datagram back to its sender, unchanged. Opt-in
 * (`--udp-echo PORT`, off by default), and it changes nothing in the guest: it only answers, at most 2 000 a second.
 */
export async function startUdpEchoResponder(port: number, log: (line: string) => void): Promise<() => Promise<void>> {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  let windowStart = Date.now();
  let answered = 0;
  socket.on('message', (message, peer) => {
    if (message.length !== ECHO_PROBE_BYTES) return;
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      answered = 0;
    }
    if (++answered > MAX_ANSWERS_PER_SECOND) return;
    socket.send(message, peer.port, peer.address);
  });
  socket.on('error', (error) => log(`udp echo: ${error.message}`));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  log(`answering blackout probes on udp/${port}`);
  return () => new Promise<void>((resolve) => socket.close(() => resolve()));
}
