import { runCommand } from './run-command.js';

/** Where an `ip` command acts: the caller's namespace, or a named one (`ip -n NAME`). */
export interface IpTarget {
  netns?: string;
}

/** One interface as `ip -j link show` prints it (only the fields flinch reads). */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate: string;
  address?: string;
  /** The bridge (or bond) the interface is enslaved to. */
  master?: string;
}

/**
 * The one place flinch drives iproute2. Structured output (`ip -j`) is parsed rather than scraped.
 */
export async function ip(args: readonly string[], target: IpTarget = {}): Promise<string> {
  const prefix = target.netns ? ['-n', target.netns] : [];
  const { stdout } = await runCommand('ip', [...prefix, ...args]);
  return stdout;
}

export async function ipJson<T>(args: readonly string[], target: IpTarget = {}): Promise<T> {
  const text = await ip(['-j', ...args], target);
  try {
    return JSON.parse(text.trim() || '[]') as T;
  } catch {
    throw new Error(`ip -j ${args.join(' ')}: unparseable output: ${text.slice(0, 80)}`);
  }
}

export async function listLinks(target: IpTarget = {}): Promise<IpLink[]> {
  return ipJson<IpLink[]>(['link', 'show'], target);
}

export async function listNetns(): Promise<string[]> {
  const entries = await ipJson<Array<{ name: string }>>(['netns', 'list']);
  return entries.map((entry) => entry.name);
}

export async function addNetns(name: string): Promise<void> {
  await ip(['netns', 'add', name]);
  await ip(['link', 'set', 'lo', 'up'], { netns: name });
}

export async function deleteNetns(name: string): Promise<void> {
  if ((await listNetns()).includes(name)) await ip(['netns', 'del', name]);
}
