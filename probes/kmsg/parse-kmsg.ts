/** One /dev/kmsg record (Documentation/ABI/testing/dev-kmsg): "prio,seq,usec,flags[,...];message\n KEY=value\n". */
export interface KmsgRecord {
  priority: number;
  facility: number;
  seq: number;
  kernelTimeMs: number;
  message: string;
  raw: string;
}

/** Decodes the \xNN escapes the kernel uses for unprintable bytes. */
function unescape(text: string): string {
  return text.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

export function parseKmsgRecord(raw: string): KmsgRecord | null {
  const semicolon = raw.indexOf(';');
  if (semicolon < 0) return null;
  const [prefix, seq, usec] = raw.slice(0, semicolon).split(',');
  const level = Number(prefix);
  const sequence = Number(seq);
  const micros = Number(usec);
  if (!Number.isInteger(level) || !Number.isInteger(sequence) || !Number.isFinite(micros)) return null;
  const text = raw.slice(semicolon + 1).split('\n')[0] ?? '';
  return { priority: level & 7, facility: level >> 3, seq: sequence, kernelTimeMs: micros / 1000, message: unescape(text), raw: raw.replace(/\n$/, '') };
}

/**
 * What flinch recognises in kernel messages: the steps of a suspend/resume (Xen save/restore and migration go through
 * the freezer), Xen's manage and netfront/netback drivers, and power-management lines.
 */
const TAGS: ReadonlyArray<[tag: string, pattern: RegExp]> = [
  ['suspend-resume', /Freezing user space processes|Freezing remaining freezable tasks|Restarting tasks|suspending xenstore|OOM killer (dis|en)abled/],
  ['xen-manage', /xen:manage|xen_manage|xen: manage/],
  ['netfront', /netfront|xen_netfront|netback_changed/],
  ['netback', /xen-netback|xen_netback|\bvif\d+\.\d+/],
  ['pm', /^PM: /],
];

export function tagKmsgMessage(message: string): string[] {
  return TAGS.filter(([, pattern]) => pattern.test(message)).map(([tag]) => tag);
}
