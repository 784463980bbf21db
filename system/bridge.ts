import { startLineMonitor, type LineMonitor } from './line-monitor.js';

/** A change in a Linux bridge's forwarding database: where it now sends frames for `mac`. */
export interface FdbChange {
  /** When the kernel's notification was read: `bridge monitor`'s own timestamp, host CLOCK_REALTIME in ms. */
  atMs: number;
  mac: string;
  port: string;
  deleted: boolean;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** "Timestamp: Tue Dec  1 22:25:27 2026 23683 usec": iproute2's print_timestamp, in UTC because the child's TZ is. */
const STAMP = /^Timestamp: \w{3} (\w{3}) +(\d+) (\d+):(\d+):(\d+) (\d+) +(\d+) usec/;
/** "52:54:00:aa:bb:cc dev tap1 master br0" or "Deleted 52:54:00:aa:bb:cc dev tap0 master br0 ...". */
const ENTRY = /^(Deleted )?([0-9a-f]{2}(?::[0-9a-f]{2}){5}) dev (\S+)/;

export function parseFdbStamp(line: string): number | null {
  const m = STAMP.exec(line);
  if (!m) return null;
  const month = MONTHS.indexOf(m[1]!);
  if (month < 0) return null;
  return Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])) + Number(m[7]) / 1000;
}

/** Parses `bridge -t monitor fdb` a line at a time: a timestamp line, then the entry it stamps. */
export function fdbLineReader(onChange: (change: FdbChange) => void): (line: string) => void {
  let stampMs: number | null = null;
  return (line) => {
    const stamp = parseFdbStamp(line);
    if (stamp !== null) {
      stampMs = stamp;
      return;
    }
    const entry = ENTRY.exec(line);
    if (!entry || stampMs === null || line.includes(' permanent')) return;
    onChange({ atMs: stampMs, mac: entry[2]!, port: entry[3]!, deleted: entry[1] !== undefined });
    stampMs = null;
  };
}

/** Watches the forwarding database of the bridges in this namespace (or `netns`): each learnt, moved and deleted entry. */
export function monitorFdb(onChange: (change: FdbChange) => void, netns?: string): LineMonitor {
  return startLineMonitor('bridge', ['-t', 'monitor', 'fdb'], fdbLineReader(onChange), { env: { ...process.env, TZ: 'UTC' }, ...(netns ? { netns } : {}) });
}
