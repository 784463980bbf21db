import { startLineMonitor, type LineMonitor } from './line-monitor.js';
import { CommandError, findExecutable } from './run-command.js';

/** One ICMP timestamp reply (RFC 792 type 14) as hping3 printed it. */
export interface TimestampReply {
  seq: number;
  /** Round trip hping3 measured (ms, 0.1 ms steps). */
  rttMs: number;
  /** The three RFC 792 fields: ms since midnight UTC; originate by this host's clock, receive/transmit by the peer's. */
  originate: number;
  receive: number;
  transmit: number;
}

const REPLY = /^len=\d+ ip=\S+ .*icmp_seq=(\d+) rtt=([\d.]+) ms/;
const STAMPS = /^ICMP timestamp: Originate=(\d+) Receive=(\d+) Transmit=(\d+)/;

/** Reads hping3 --icmp-ts output: a reply line, then the line with its three timestamps. */
export function timestampReplyReader(onReply: (reply: TimestampReply) => void): (line: string) => void {
  let pending: { seq: number; rttMs: number } | null = null;
  return (line) => {
    const reply = REPLY.exec(line);
    if (reply) {
      pending = line.includes('DUP!') ? null : { seq: Number(reply[1]), rttMs: Number(reply[2]) };
      return;
    }
    const stamps = STAMPS.exec(line);
    if (stamps && pending) onReply({ ...pending, originate: Number(stamps[1]), receive: Number(stamps[2]), transmit: Number(stamps[3]) });
    if (stamps) pending = null;
  };
}

/**
 * Sends ICMP timestamp requests to `host` every `intervalMs` until stopped (hping3, line-buffered through stdbuf so
 * each reply is read as it comes). The peer's kernel answers them: nothing runs in the guest for it.
 */
export function sendTimestampRequests(host: string, intervalMs: number, onReply: (reply: TimestampReply) => void, netns?: string): LineMonitor {
  if (!findExecutable('hping3')) throw new CommandError('hping3 is not installed (apt-get install hping3)', 'hping3', [], null, '');
  return startLineMonitor('stdbuf', ['-oL', 'hping3', '--icmp', '--icmp-ts', '-i', `u${Math.round(intervalMs * 1000)}`, host], timestampReplyReader(onReply), {
    readyWhen: /^HPING /,
    ...(netns ? { netns } : {}),
  });
}
