import { startLineMonitor, type LineMonitor } from './line-monitor.js';

/**
 * What a guest says to the network when it arrives somewhere: QEMU's RARPs (announce-self, sent for the guest), the
 * guest's own gratuitous ARPs and its unsolicited neighbour advertisements (to all-nodes).
 */
export type AnnouncementKind = 'rarp' | 'gratuitous-arp' | 'unsolicited-na';

export interface CapturedAnnouncement {
  /** The kernel's capture time, host CLOCK_REALTIME in ms. */
  atMs: number;
  kind: AnnouncementKind;
  /** The frame's source MAC. */
  sender: string;
  /** The interface it came in on: which QEMU's tap sent it. */
  port: string;
  /** The address announced (IPv4, IPv6 target, or the MAC for a RARP). */
  announced: string;
}

/** Only frames coming in from the guest side; ARP, RARP and neighbour advertisements (ICMPv6 type 136). */
const FILTER = 'arp or rarp or (icmp6 and ip6[40] == 136)';
const MAC = '[0-9a-f]{2}(?::[0-9a-f]{2}){5}';
const HEAD = new RegExp(`^(\\d+\\.\\d+) (${MAC}) > (${MAC}), ethertype (.+?) \\(0x[0-9a-f]+\\), length \\d+: (.*)$`);

/**
 * One line of `tcpdump -tt -n -e` as an announcement, or null for any other frame. The formats are tcpdump's
 * print-arp.c and print-icmp6.c:
 *   ARP, gratuitous: "Request who-has 10.0.3.10 (ff:ff:ff:ff:ff:ff) tell 10.0.3.10" or "Reply 10.0.3.10 is-at <mac>"
 *   to broadcast; RARP: "Reverse Request who-is <mac> tell <mac>"; NA: "<src> > ff02::1: ICMP6, neighbor advertisement,
 *   tgt is <addr>".
 */
export function parseAnnouncementLine(line: string, port: string): CapturedAnnouncement | null {
  const head = HEAD.exec(line);
  if (!head) return null;
  const [, stamp, sender, destination, ethertype, rest] = head as unknown as [string, string, string, string, string, string];
  const atMs = Number(stamp) * 1000;
  const base = { atMs, sender, port };
  if (ethertype === 'Reverse ARP') {
    const rarp = new RegExp(`^Reverse Request who-is (${MAC})`).exec(rest);
    return rarp ? { ...base, kind: 'rarp', announced: rarp[1]! } : null;
  }
  if (ethertype === 'ARP') {
    const request = /^Request who-has (\S+)(?: \(\S+\))? tell (\S+?),/.exec(rest);
    if (request && request[1] === request[2]) return { ...base, kind: 'gratuitous-arp', announced: request[1]! };
    const reply = /^Reply (\S+) is-at /.exec(rest);
    if (reply && destination === 'ff:ff:ff:ff:ff:ff') return { ...base, kind: 'gratuitous-arp', announced: reply[1]! };
    return null;
  }
  if (ethertype === 'IPv6') {
    const na = /^\S+ > (ff02::1): ICMP6, neighbor advertisement, tgt is (\S+?),/.exec(rest);
    return na ? { ...base, kind: 'unsolicited-na', announced: na[2]! } : null;
  }
  return null;
}

/**
 * Captures the announcements coming in on `port` (a tap: frames its QEMU sent), with a supervised tcpdump in
 * immediate mode so that each arrives as it is captured. `ready` resolves once tcpdump has the capture open.
 */
export function captureAnnouncements(port: string, onAnnouncement: (announcement: CapturedAnnouncement) => void, netns?: string): LineMonitor {
  return startLineMonitor(
    'tcpdump',
    ['-i', port, '-Q', 'in', '-tt', '-n', '-e', '-l', '--immediate-mode', '-p', FILTER],
    (line) => {
      const announcement = parseAnnouncementLine(line, port);
      if (announcement) onAnnouncement(announcement);
    },
    { readyWhen: /^listening on /, readyTimeoutMs: 10_000, ...(netns ? { netns } : {}) },
  );
}
