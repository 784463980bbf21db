/**
 * QEMU's own command-line syntax, read and written back: the options of a running QEMU (its /proc/PID/cmdline), and
 * the comma-separated `key=value` lists most of them take. Nothing here knows what an option means.
 */

/** One option as QEMU read it: `-name value`, or a flag (`-nodefaults`) with no value. */
export interface QemuOption {
  name: string;
  value: string | null;
}

/**
 * The options that take no argument, from QEMU's qemu-options.hx (the DEF entries with flags 0), 7.2 to 10.0, and the
 * older spellings still in users' scripts. Every other option takes one: that is QEMU's own rule (HAS_ARG), so an
 * option missing here is read as taking an argument, exactly as QEMU would have failed or read it.
 */
const NO_ARGUMENT_OPTIONS = new Set([
  'h', 'help', 'version', 'mem-prealloc', 'audio-help', 'snapshot', 'usb', 'nographic', 'portrait', 'full-screen', 'win2k-hack',
  'no-fd-bootchk', 'no-acpi', 'no-hpet', 'singlestep', 'one-insn-per-tb', 'preconfig', 'S', 's', 'enable-kvm', 'xen-attach',
  'xen-domid-restrict', 'no-reboot', 'no-shutdown', 'daemonize', 'only-migratable', 'nodefaults', 'no-user-config',
  'enable-sync-profile', 'old-param', 'perfmap', 'jitdump', 'semihosting', 'enable-fips', 'no-quit', 'alt-grab', 'ctrl-grab',
  'rtc-td-hack', 'no-kvm', 'no-kvm-pit-reinjection', 'no-frame', 'sdl', 'curses', 'no-kvm-irqchip',
]);

export class QemuCommandLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QemuCommandLineError';
  }
}

/**
 * The options of a QEMU command line, without the program itself. QEMU takes `-opt` and `--opt` alike; a word that
 * is not an option where one is expected is its disk image (`qemu-system-x86_64 disk.img`), kept as `hda`.
 */
export function parseQemuArguments(argv: readonly string[]): QemuOption[] {
  const options: QemuOption[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i]!;
    if (!word.startsWith('-') || word === '-' || word === '--') {
      options.push({ name: 'hda', value: word });
      continue;
    }
    const name = word.replace(/^--?/, '');
    if (NO_ARGUMENT_OPTIONS.has(name)) {
      options.push({ name, value: null });
      continue;
    }
    if (i + 1 >= argv.length) throw new QemuCommandLineError(`-${name} needs an argument and is the last word`);
    options.push({ name, value: argv[i + 1]! });
    i += 1;
  }
  return options;
}

export function formatQemuArguments(options: readonly QemuOption[]): string[] {
  return options.flatMap((o) => (o.value === null ? [`-${o.name}`] : [`-${o.name}`, o.value]));
}

/** A `key=value,...` list in its order; a part without `=` is the implied key's value (first part) or a bare flag. */
export type Keyval = Array<[key: string, value: string | null]>;

/**
 * Splits QEMU's option list syntax: `,` separates, `,,` is a literal comma. The first part without `=` is the value of
 * `impliedKey` (`-netdev tap,...` is `type=tap`), as QEMU's implied keys are.
 */
export function parseKeyval(text: string, impliedKey: string | null): Keyval {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i]!;
    if (c === ',' && text[i + 1] === ',') {
      current += ',';
      i += 1;
    } else if (c === ',') {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts.map((part, index): [string, string | null] => {
    const equals = part.indexOf('=');
    if (equals >= 0) return [part.slice(0, equals), part.slice(equals + 1)];
    if (index === 0 && impliedKey !== null) return [impliedKey, part];
    return [part, null];
  });
}

export function formatKeyval(list: Keyval, impliedKey: string | null): string {
  const escape = (s: string) => s.replaceAll(',', ',,');
  return list
    .map(([key, value], index) => {
      if (value === null) return escape(key);
      if (index === 0 && key === impliedKey) return escape(value);
      return `${escape(key)}=${escape(value)}`;
    })
    .join(',');
}

export function keyvalGet(list: Keyval, key: string): string | undefined {
  const found = list.find(([k]) => k === key);
  return found ? (found[1] ?? 'on') : undefined;
}

/** The list with `key` set to `value`, in place where it was, or added at the end. */
export function keyvalSet(list: Keyval, key: string, value: string): Keyval {
  return list.some(([k]) => k === key) ? list.map(([k, v]): [string, string | null] => (k === key ? [k, value] : [k, v])) : [...list, [key, value]];
}

/** QEMU's booleans: on/yes/true, and a bare flag. */
export function isOn(value: string | undefined): boolean {
  return value === 'on' || value === 'yes' || value === 'true';
}
