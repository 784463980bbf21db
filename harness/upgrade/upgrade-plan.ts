import path from 'node:path';
import {
  formatKeyval, formatQemuArguments, isOn, keyvalGet, keyvalSet, parseKeyval, parseQemuArguments, QemuCommandLineError, type Keyval, type QemuOption,
} from '../../system/qemu/qemu-command-line.js';

/**
 * What the running QEMU and this host say, read before planning, so that planning itself is a pure function of them
 * (and can be fed anything in a test).
 */
export interface UpgradeFacts {
  /** The QMP socket flinch was given (absolute): the new QEMU's counterpart is the one flinch drives. */
  qmpSocket: string;
  /** The machine the guest really runs, from QOM (`pc-q35-7.2`): an alias (`q35`) means another on a newer QEMU. */
  machineType: string;
  /** The interfaces of this namespace by name, with the bridge each is on. */
  links: ReadonlyMap<string, { master: string | null; mtu: number }>;
  /** A fresh path beside `oldPath` for the new process's copy of a socket or file. */
  newPath(oldPath: string): string;
  /** A tap name free on this host, for the new process's side of `oldTap`. */
  newTapName(oldTap: string): string;
  /** TCP ports nobody listens on, taken in order for the listeners both processes want. */
  freePorts: readonly number[];
  /** VNC displays (port 5900 + N) nobody listens on. */
  freeVncDisplays: readonly number[];
}

/** One thing the new process has somewhere else than the old one did: the user's scripts must be told. */
export interface Move {
  what: string;
  from: string;
  to: string;
}

/** A tap the new process needs before it starts: on the bridge the old one is on, with its MTU. */
export interface TapToCreate {
  name: string;
  bridge: string;
  mtu: number;
  /** The netdev asks for several queues (`queues=N`): the tap must be made multiqueue, or QEMU cannot attach them. */
  multiQueue: boolean;
  /** The tap it replaces, which stays where it is (it may be the user's; flinch does not delete it). */
  replaces: string;
}

export interface UpgradePlan {
  /** The new QEMU's options, without `-incoming`, `-daemonize` and `-pidfile`, which the upgrade adds. */
  options: QemuOption[];
  moves: Move[];
  /** Why this QEMU cannot be upgraded in place, one line per option; empty if it can. */
  refusals: string[];
  taps: TapToCreate[];
  /** The new process's QMP socket, where flinch drives it (the counterpart of UpgradeFacts.qmpSocket). */
  controlSocket: string | null;
  /** The user's pid file, which the new process's pid is moved to once the old one has gone; null if none. */
  pidfile: string | null;
  /**
   * The pid file as the old process was started with it (an upgraded process's fresh name, since renamed): the old
   * process removes this name when it quits, so the new one must not be given it.
   */
  oldPidfile: string | null;
  /** The machine type the new process runs (the old one's, never an alias). */
  machineType: string;
}

const SUFFIX = /\.upgraded-\d+$/;

/** Strips an earlier upgrade's suffix, so that upgrading again does not grow the names. */
export function baseOfPath(file: string): string {
  return file.replace(SUFFIX, '');
}

/**
 * How to start a second QEMU that can take over this one's guest on the same host: every option kept as the guest
 * was configured, except what both processes cannot hold at once. Those are moved (a second tap on the same bridge,
 * a new socket path, a free port) or, where nothing can move them, refused with the reason: a guest is never
 * migrated to a process that would lose part of it.
 */
export function planUpgrade(argv: readonly string[], facts: UpgradeFacts): UpgradePlan {
  const refusals: string[] = [];
  const moves: Move[] = [];
  const taps: TapToCreate[] = [];
  const ports = [...facts.freePorts];
  const displays = [...facts.freeVncDisplays];
  let controlSocket: string | null = null;
  let pidfile: string | null = null;
  let oldPidfile: string | null = null;
  let machineSeen = false;
  let serialFiles = 0;
  let options: QemuOption[];
  try {
    options = parseQemuArguments(argv);
  } catch (error) {
    if (error instanceof QemuCommandLineError) return { options: [], moves, refusals: [error.message], taps, controlSocket, pidfile, oldPidfile, machineType: facts.machineType };
    throw error;
  }
  const refuse = (option: QemuOption, why: string) => refusals.push(`-${option.name}${option.value === null ? '' : ` ${shorten(option.value)}`}: ${why}`);
  const takePort = (option: QemuOption): number | null => {
    const port = ports.shift();
    if (port === undefined) refuse(option, 'no free TCP port left to move its listener to');
    return port ?? null;
  };
  const movePath = (what: string, from: string): string => {
    const to = facts.newPath(path.resolve(from));
    moves.push({ what, from, to });
    return to;
  };
  /** A unix socket the old process listens on: the new one listens beside it; the --qmp one is flinch's to drive. */
  const moveListener = (what: string, from: string): string => {
    const to = movePath(what, from);
    if (path.resolve(from) === facts.qmpSocket) controlSocket = to;
    return to;
  };

  const out: QemuOption[] = [];
  for (const option of options) {
    const { name, value } = option;
    const keep = () => out.push(option);
    const withValue = (v: string) => out.push({ name, value: v });
    switch (name) {
      case 'incoming':
      case 'daemonize':
      case 'S':
      case 'loadvm':
        // The new process waits for the guest's state (-incoming), is started detached by flinch, and must neither
        // wait for a `cont` nor load a snapshot over the RAM it receives.
        break;
      case 'pidfile':
        // The user's own name for it: an earlier upgrade's process was started on a fresh one and renamed to it.
        oldPidfile = path.resolve(value!);
        pidfile = baseOfPath(oldPidfile);
        break;
      case 'machine':
      case 'M': {
        machineSeen = true;
        const list = parseKeyval(value!, 'type');
        const type = keyvalGet(list, 'type');
        if (type === 'help' || type === '?') return { options: [], moves, refusals: ['-machine help: not a guest'], taps, controlSocket, pidfile, oldPidfile, machineType: facts.machineType };
        out.push({ name: 'machine', value: formatKeyval(type === undefined ? [['type', facts.machineType], ...list] : keyvalSet(list, 'type', facts.machineType), 'type') });
        break;
      }
      case 'snapshot':
        refuse(option, "the guest writes its disks to temporary overlays the new process cannot open: what it wrote would be lost");
        break;
      case 'readconfig':
        refuse(option, 'the configuration file may hold sockets, taps and ports both processes would want; write it on the command line');
        break;
      case 'add-fd':
        refuse(option, 'file descriptors handed over by the process that started QEMU cannot be opened again by another process');
        break;
      case 'nographic':
        refuse(option, "the guest's serial console and monitor are on the old process's terminal, which the new process cannot have; use -serial unix:PATH,server=on,wait=off");
        break;
      case 'chroot':
        refuse(option, 'the new process would look for the moved sockets inside the chroot; run QEMU without -chroot (or -run-with chroot=) to upgrade it');
        break;
      case 'drive': {
        const list = parseKeyval(value!, null);
        if (isOn(keyvalGet(list, 'snapshot'))) refuse(option, "snapshot=on: the disk's writes are in a temporary overlay the new process cannot open, and would be lost");
        else keep();
        break;
      }
      case 'netdev':
      case 'nic':
        planNetdev(option, refuse, keep, withValue, facts, moves, taps);
        break;
      case 'net':
        refuse(option, 'the legacy -net syntax: write the guest NIC as -netdev plus -device (or -nic)');
        break;
      case 'device': {
        const driver = keyvalGet(parseKeyval(value!, 'driver'), 'driver') ?? '';
        if (/^vfio/.test(driver)) refuse(option, 'a passed-through device belongs to one process at a time');
        else if (/^vhost-user/.test(driver)) refuse(option, 'a vhost-user backend serves one QEMU; it cannot be shared during the migration');
        else keep();
        break;
      }
      case 'object': {
        const list = parseKeyval(value!, 'qom-type');
        const type = keyvalGet(list, 'qom-type') ?? '';
        if (/^memory-backend-(file|memfd)$/.test(type) && isOn(keyvalGet(list, 'share'))) refuse(option, 'shared guest memory would be mapped by both processes at once');
        else keep();
        break;
      }
      case 'chardev': {
        const list = parseKeyval(value!, 'backend');
        const backend = keyvalGet(list, 'backend');
        const id = keyvalGet(list, 'id') ?? '?';
        if (backend === 'stdio') refuse(option, "on the old process's terminal, which the new process cannot have; use a unix socket");
        else if (keyvalGet(list, 'fd') !== undefined) refuse(option, 'a file descriptor handed over by the process that started QEMU (libvirt does this: use flinch campaign --driver libvirt --domain)');
        else if (backend === 'socket' && isOn(keyvalGet(list, 'server')) && keyvalGet(list, 'path') !== undefined) {
          withValue(formatKeyval(keyvalSet(list, 'path', moveListener(`chardev ${id}`, keyvalGet(list, 'path')!)), 'backend'));
        } else if (backend === 'socket' && isOn(keyvalGet(list, 'server')) && keyvalGet(list, 'port') !== undefined) {
          const port = takePort(option);
          if (port !== null) {
            moves.push({ what: `chardev ${id}`, from: `port ${keyvalGet(list, 'port')}`, to: `port ${port}` });
            withValue(formatKeyval(keyvalSet(list, 'port', String(port)), 'backend'));
          }
        } else if (backend === 'file' && !isOn(keyvalGet(list, 'append'))) {
          // A file chardev is truncated when opened: the new process appends, so the log the old one wrote is kept.
          withValue(formatKeyval(keyvalSet(list, 'append', 'on'), 'backend'));
        } else keep();
        break;
      }
      case 'serial':
      case 'parallel':
      case 'debugcon':
      case 'monitor':
      case 'qmp':
      case 'qmp-pretty': {
        const legacy = planLegacyChardev(option, refuse, moveListener, takePort, moves);
        if (legacy === null) break;
        if (legacy.startsWith('file:') && (name === 'serial' || name === 'parallel' || name === 'debugcon')) {
          const id = `upgrade-${name}${serialFiles++}`;
          out.push({ name: 'chardev', value: formatKeyval([['backend', 'file'], ['id', id], ['path', legacy.slice(5)], ['append', 'on']], 'backend') });
          withValue(`chardev:${id}`);
        } else withValue(legacy);
        break;
      }
      case 'vnc': {
        const vnc = planVnc(value!, displays, movePath, moves);
        if ('why' in vnc) refuse(option, vnc.why);
        else withValue(vnc.value);
        break;
      }
      case 'spice': {
        let list = parseKeyval(value!, null);
        if (isOn(keyvalGet(list, 'unix')) && keyvalGet(list, 'addr') !== undefined) list = keyvalSet(list, 'addr', movePath('SPICE socket', keyvalGet(list, 'addr')!));
        for (const key of ['port', 'tls-port']) {
          const old = keyvalGet(list, key);
          if (old === undefined || old === '0') continue;
          const port = takePort(option);
          if (port === null) continue;
          moves.push({ what: `SPICE ${key}`, from: old, to: String(port) });
          list = keyvalSet(list, key, String(port));
        }
        withValue(formatKeyval(list, null));
        break;
      }
      case 'display': {
        const kind = keyvalGet(parseKeyval(value!, 'type'), 'type') ?? '';
        if (kind === 'none' || kind === 'egl-headless' || kind === 'spice-app' || kind === 'dbus') keep();
        else if (kind.startsWith('vnc')) refuse(option, 'write the VNC server as -vnc, which flinch can move to a free display');
        else refuse(option, `-display ${kind}: a window or terminal belongs to the old process's session; use -display none with -vnc or -spice`);
        break;
      }
      case 'D':
        withValue(movePath('QEMU log (-D, truncated when opened)', value!));
        break;
      default:
        keep();
    }
  }
  if (!machineSeen) out.unshift({ name: 'machine', value: facts.machineType });
  if (controlSocket === null && refusals.length === 0) {
    refusals.push(`${facts.qmpSocket}: not a QMP socket on this QEMU's command line (-qmp unix:PATH or -chardev socket,path=PATH with -mon mode=control): flinch drives the new QEMU through its counterpart`);
  }
  return { options: out, moves, refusals, taps, controlSocket, pidfile, oldPidfile, machineType: facts.machineType };
}

function planNetdev(
  option: QemuOption,
  refuse: (option: QemuOption, why: string) => void,
  keep: () => void,
  withValue: (value: string) => void,
  facts: UpgradeFacts,
  moves: Move[],
  taps: TapToCreate[],
): void {
  const list = parseKeyval(option.value!, 'type');
  const type = keyvalGet(list, 'type');
  const id = keyvalGet(list, 'id') ?? '?';
  for (const key of ['fd', 'fds', 'vhostfd', 'vhostfds']) {
    if (keyvalGet(list, key) !== undefined) return refuse(option, `${key}=: a file descriptor handed over by the process that started QEMU (libvirt does this: use flinch campaign --driver libvirt --domain)`);
  }
  if (type === 'user') {
    if (list.some(([key]) => key === 'hostfwd')) return refuse(option, 'hostfwd: both processes would listen on the forwarded host port; the guest\'s user-mode connections are reset by a migration anyway');
    return keep();
  }
  if (type === 'socket' && keyvalGet(list, 'listen') !== undefined) return refuse(option, 'listen=: both processes would listen on the same port');
  if (type === 'vhost-user' || type === 'vhost-vdpa' || type === 'af-xdp') return refuse(option, `${type}: a backend that serves one process at a time`);
  if (type !== 'tap') return keep();
  const ifname = keyvalGet(list, 'ifname');
  const script = keyvalGet(list, 'script');
  const scriptless = script === 'no' || script === '';
  if (ifname === undefined) {
    if (scriptless) return refuse(option, 'a tap with script=no and no ifname= is on no bridge flinch can find');
    return keep();
  }
  const newName = facts.newTapName(ifname);
  if (scriptless) {
    const link = facts.links.get(ifname);
    if (!link) return refuse(option, `tap ${ifname} does not exist in this network namespace (run flinch where the QEMU runs)`);
    if (!link.master) return refuse(option, `tap ${ifname} is on no bridge: flinch cannot wire a second tap the way it is wired`);
    taps.push({ name: newName, bridge: link.master, mtu: link.mtu, multiQueue: Number(keyvalGet(list, 'queues') ?? 1) > 1, replaces: ifname });
  }
  moves.push({ what: `netdev ${id} tap`, from: ifname, to: `${newName}${scriptless ? ` (created on ${facts.links.get(ifname)!.master})` : ' (created by QEMU, wired by its script)'}` });
  withValue(formatKeyval(keyvalSet(list, 'ifname', newName), 'type'));
}

/**
 * The legacy character-device syntax of -serial, -monitor and -qmp (`unix:PATH,server=on`, `tcp:HOST:PORT,server`,
 * `stdio`, `file:PATH`...): the value the new process gets, or null if refused.
 */
function planLegacyChardev(
  option: QemuOption,
  refuse: (option: QemuOption, why: string) => void,
  moveListener: (what: string, from: string) => string,
  takePort: (option: QemuOption) => number | null,
  moves: Move[],
): string | null {
  const value = option.value!;
  const what = `-${option.name}`;
  if (value === 'stdio' || value === 'mon:stdio' || value.startsWith('mon:stdio')) {
    refuse(option, "on the old process's terminal, which the new process cannot have; use unix:PATH,server=on,wait=off");
    return null;
  }
  const colon = value.indexOf(':');
  const kind = colon < 0 ? value : value.slice(0, colon);
  const rest = colon < 0 ? '' : value.slice(colon + 1);
  if (kind === 'unix') {
    const list = parseKeyval(rest, 'path');
    const isServer = isOn(keyvalGet(list, 'server'));
    if (!isServer || keyvalGet(list, 'path') === undefined) return value;
    return `unix:${formatKeyval(keyvalSet(list, 'path', moveListener(what, keyvalGet(list, 'path')!)), 'path')}`;
  }
  if (kind === 'tcp' || kind === 'telnet') {
    const list = parseKeyval(rest, 'address');
    if (!isOn(keyvalGet(list, 'server'))) return value;
    const address = keyvalGet(list, 'address') ?? '';
    const portAt = address.lastIndexOf(':');
    const port = takePort(option);
    if (port === null) return null;
    moves.push({ what, from: `port ${address.slice(portAt + 1)}`, to: `port ${port}` });
    return `${kind}:${formatKeyval(keyvalSet(list, 'address', `${address.slice(0, portAt)}:${port}`), 'address')}`;
  }
  return value;
}

/** `-vnc :N`, `-vnc HOST:N`, `-vnc unix:PATH`, `-vnc none`: the new process's, on a free display or a new socket. */
function planVnc(value: string, displays: number[], movePath: (what: string, from: string) => string, moves: Move[]): { value: string } | { why: string } {
  const list: Keyval = parseKeyval(value, 'vnc');
  const where = keyvalGet(list, 'vnc') ?? '';
  if (where === 'none') return { value };
  if (keyvalGet(list, 'websocket') !== undefined) return { why: 'websocket=: its port cannot be moved with the display; drop it to upgrade' };
  if (where.startsWith('unix:')) return { value: formatKeyval(keyvalSet(list, 'vnc', `unix:${movePath('VNC socket', where.slice(5))}`), 'vnc') };
  const at = where.lastIndexOf(':');
  if (at < 0) return { why: 'not a VNC display flinch can read (HOST:DISPLAY, unix:PATH or none)' };
  const display = displays.shift();
  if (display === undefined) return { why: 'no free VNC display left to move it to' };
  moves.push({ what: 'VNC display', from: where, to: `${where.slice(0, at)}:${display}` });
  return { value: formatKeyval(keyvalSet(list, 'vnc', `${where.slice(0, at)}:${display}`), 'vnc') };
}

function shorten(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The new process's command line: the plan's options, started waiting for the guest, detached, with its pid file. */
export function upgradeArguments(plan: UpgradePlan, pidfile: string): string[] {
  return [...formatQemuArguments(plan.options), '-incoming', 'defer', '-daemonize', '-pidfile', pidfile];
}
