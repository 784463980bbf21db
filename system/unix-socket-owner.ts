import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

/** __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket listens. */
const LISTENING = 0x10000;

/**
 * The socket inodes that listen on `socketPath`, from /proc/net/unix. That table is per network namespace: a QEMU
 * in another namespace is not found from here.
 */
export function listeningInodes(socketPath: string, table = readFileSync('/proc/net/unix', 'utf8')): number[] {
  const wanted = path.resolve(socketPath);
  const inodes: number[] = [];
  for (const line of table.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path: the path may hold spaces, so it is whatever follows the inode.
    const match = /^\s*\S+:\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+\S+\s+\S+\s+(\d+)\s(.*)$/.exec(line);
    if (!match || (parseInt(match[1]!, 16) & LISTENING) === 0) continue;
    if (path.resolve(match[3]!) === wanted) inodes.push(Number(match[2]));
  }
  return inodes;
}

/**
 * The process that holds the socket listening at `socketPath` (what `ss -xlp` shows): each /proc/PID/fd is a link
 * `socket:[INODE]`. Null if nobody in this namespace listens there; a PID we may not read is skipped.
 */
export function processListeningOn(socketPath: string): number | null {
  const inodes = new Set(listeningInodes(socketPath).map((inode) => `socket:[${inode}]`));
  if (inodes.size === 0) return null;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // The descriptor closed while we looked.
      }
    }
  }
  return null;
}

/** A process's argv, from /proc/PID/cmdline (NUL-separated, so arguments with spaces stay whole). */
export function processArguments(pid: number): string[] {
  const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  return raw.split('\0').slice(0, raw.endsWith('\0') ? -1 : undefined);
}

/** The executable a process runs; " (deleted)" when a package upgrade replaced the file under it. */
export function processExecutable(pid: number): string {
  return readlinkSync(`/proc/${pid}/exe`);
}

export function processAlive(pid: number): boolean {
  try {
    // A zombie has its pid until its parent reaps it, and is gone for every purpose here.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
