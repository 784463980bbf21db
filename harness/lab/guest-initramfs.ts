import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync,
  symlinkSync, utimesSync, writeFileSync, createWriteStream,
} from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { findExecutable, runCommand } from '../../system/run-command.js';
import { UserError } from '../../contract/command-line.js';
import { guestAgentExecutable, projectRoot } from '../project-paths.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { withCacheLock } from './cache-lock.js';
import { guestKernelFrom, modulesWithDependencies, type GuestKernel } from './debian-kernel.js';
import type { LabNetwork } from './lab-network.js';

/** Bump when the layout of the base image changes, so old caches are not reused. */
const BASE_LAYOUT_VERSION = 2;

/**
 * The netfilter modules every lab guest loads; the Debian kernels build them as modules. ipt_REJECT is listed
 * because without it `iptables -j REJECT` fails under iptables-nft (lab notes).
 */
export const FIREWALL_MODULES = [
  'nf_tables', 'nft_compat', 'nft_ct', 'nft_reject_inet', 'nft_chain_nat', 'xt_tcpudp',
  'xt_comment', 'xt_conntrack', 'xt_mark', 'nf_conntrack', 'nft_fib_inet', 'ipt_REJECT', 'nft_reject_ipv4',
];

/** What a guest image is made for: its NIC driver decides the modules, and each kind keeps its own cache. */
/** The UDP port of the agent's echo responder in every lab guest: what the blackout meter sends to. */
export const GUEST_ECHO_PORT = 7433;

/**
 * The kernel command line by which a lab guest's init (guest/init.sh) is told its address, its collector and its
 * agent's identity and key; the safety net is on, as a lab exists to see it work.
 */
export function agentKernelArguments(guest: {
  network: LabNetwork; collectorPort: number; agentId: string; fleetSecret: string; probes?: readonly string[] | null;
  /** Run chronyd in the guest, with the lab namespace's side of the link as its NTP server. */
  timeDaemon?: 'chronyd' | null;
  /** Boot with no agent at all (flinch.agent=off): the guest is measured from outside only. */
  agentless?: boolean;
}): string[] {
  const { network } = guest;
  const address = [`flinch.ip=${network.guestAddress}/${network.prefixLength}`, `flinch.gw=${network.hostAddress}`];
  if (guest.agentless) return [...address, 'flinch.agent=off', ...(guest.timeDaemon === 'chronyd' ? [`flinch.ntp=${network.hostAddress}`] : [])];
  return [
    ...address,
    `flinch.collector=ws://${network.hostAddress}:${guest.collectorPort}`,
    `flinch.id=${guest.agentId}`,
    `flinch.token=${agentKeyFor(guest.fleetSecret, guest.agentId)}`,
    `flinch.echo=${GUEST_ECHO_PORT}`,
    'flinch.remediate=on',
    ...(guest.probes ? [`flinch.probes=${guest.probes.join(',')}`] : []),
    ...(guest.timeDaemon === 'chronyd' ? [`flinch.ntp=${network.hostAddress}`] : []),
  ];
}

export interface GuestFlavour {
  name: 'qemu' | 'xen-domu';
  modules: readonly string[];
}

/** The QEMU lab guest: a virtio NIC. */
export const QEMU_GUEST: GuestFlavour = { name: 'qemu', modules: ['virtio_pci', 'virtio_net', ...FIREWALL_MODULES] };
/** A Xen domU: the real netfront, whose behaviour across save/restore is what the Xen lab is about. */
export const XEN_DOMU_GUEST: GuestFlavour = { name: 'xen-domu', modules: ['xen-netfront', ...FIREWALL_MODULES] };

/** Host programs copied into the guest with their shared libraries. `ip` is iproute2's: busybox's lacks -j. */
const GUEST_PROGRAMS = ['ip', 'nft', 'xtables-nft-multi'];
const XTABLES_LINKS = ['iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore'];

/**
 * chrony as packaging/host-setup.sh unpacked it (never installed on the host, whose clock its service would
 * discipline): the lab guest runs it with --guest-time-daemon chronyd, and the lab namespace serves it time with it.
 */
export function unpackedChrony(cacheDir: string): { chronyd: string; chronyc: string } | null {
  const versions = existsSync(cacheDir) ? readdirSync(cacheDir).filter((d) => d.startsWith('chrony-')).sort().reverse() : [];
  for (const version of versions) {
    const chronyd = path.join(cacheDir, version, 'usr', 'sbin', 'chronyd');
    const chronyc = path.join(cacheDir, version, 'usr', 'bin', 'chronyc');
    if (existsSync(chronyd) && existsSync(chronyc)) return { chronyd, chronyc };
  }
  return null;
}

export interface GuestImage {
  kernel: GuestKernel;
  initrd: string;
  /** Cache key of the base layer (kernel modules, tools, libraries) and of the agent layer. */
  baseKey: string;
  agentKey: string;
}

/**
 * The lab guest as the QEMU and libvirt labs boot it: a Debian cloud kernel (bookworm's, or `guestKernel`: another
 * release's by name, or a file; see guestKernelFrom) fetched into the cache, and its image.
 */
export async function labGuestImage(cacheDir: string, log: (line: string) => void, guestKernel: string | null = null): Promise<GuestImage> {
  mkdirSync(cacheDir, { recursive: true });
  return buildGuestImage(cacheDir, await guestKernelFrom(cacheDir, guestKernel, log), log);
}

/**
 * The lab guest's initramfs, in two concatenated cpio archives that the kernel unpacks one after the other: a small
 * layer with the single-executable agent and /init, rebuilt whenever the agent changes, and a base with busybox, iproute2,
 * nft/iptables and the kernel modules, rebuilt only when one of those changes. No path is in both.
 */
export async function buildGuestImage(
  cacheDir: string,
  kernel: GuestKernel,
  log: (line: string) => void,
  flavour: GuestFlavour = QEMU_GUEST,
): Promise<GuestImage> {
  const busybox = findExecutable('busybox');
  if (!busybox) throw new UserError('busybox not found; install busybox-static (apt-get install busybox-static)');
  const programs = GUEST_PROGRAMS.map((name) => {
    const found = findExecutable(name);
    if (!found) throw new UserError(`${name} not found; install iproute2, nftables and iptables`);
    return found;
  });
  const chrony = unpackedChrony(cacheDir);
  if (chrony) programs.push(chrony.chronyd, chrony.chronyc);
  const agent = guestAgentExecutable();
  if (!existsSync(agent)) throw new UserError(`the single-executable agent ${agent} is missing; run npm run build`);

  // Locked: a second run building the same image would write the same .tmp file, and its pruning below must not remove
  // an image this run is about to boot.
  return withCacheLock(cacheDir, async () => {
    const imagesDir = path.join(cacheDir, 'images', flavour.name);
    mkdirSync(imagesDir, { recursive: true });
    const baseKey = hashOf([
      String(BASE_LAYOUT_VERSION), kernel.packageName, kernel.vmlinuz, process.version, ...flavour.modules,
      ...[busybox, process.execPath, ...programs].map(fingerprint),
    ]);
    const base = path.join(imagesDir, `base-${baseKey}.cpio.zst`);
    if (!existsSync(base)) {
      log('building the guest base image (busybox, iproute2, nftables, shared libraries, kernel modules)');
      await buildBase(base, kernel, flavour.modules, busybox, programs);
    }

    const agentFiles = agentLayerSources();
    const agentKey = hashOf(agentFiles.map(([source]) => fingerprint(source)).concat(createHash('sha256').update(readFileSync(agent)).digest('hex')));
    const initrd = path.join(imagesDir, `initrd-${baseKey}-${agentKey}.img`);
    if (!existsSync(initrd)) {
      const layer = path.join(imagesDir, `agent-${agentKey}.cpio`);
      await buildAgentLayer(layer, agentFiles);
      // Uncompressed first: the kernel finds a cpio archive only at a 4-byte-aligned offset, which the end of a zstd
      // stream is not; the usual early-microcode layout (plain cpio, then compressed) is the one that always unpacks.
      await concatenate([layer, base], initrd);
      rmSync(layer);
    }
    // Each agent change makes a new image of ~90 MB. Kept: the ones just used, and any image another run used within the hour
    // (two labs at once may boot different kernels: each must find its image still there when its destination QEMU
    // starts); none from before flavours.
    const now = new Date();
    for (const used of [base, initrd]) utimesSync(used, now, now);
    for (const file of readdirSync(path.dirname(imagesDir))) {
      if (/^(base|initrd|agent)-/.test(file)) rmSync(path.join(path.dirname(imagesDir), file), { force: true });
    }
    for (const file of readdirSync(imagesDir)) {
      const full = path.join(imagesDir, file);
      if (!/^(base|initrd|agent)-/.test(file) || full === base || full === initrd) continue;
      if (now.getTime() - statSync(full).mtimeMs > IMAGE_KEPT_UNUSED_MS) rmSync(full, { recursive: true, force: true });
    }
    return { kernel, initrd, baseKey, agentKey };
  });
}

/** How long an image nobody uses any more stays in the cache. */
const IMAGE_KEPT_UNUSED_MS = 3600_000;

/** The lab guests' own firewall ruleset (the QEMU and Xen guests load it at boot, the sim guest at prepare). */
export const LAB_GUEST_FIREWALL = path.join(projectRoot(), 'harness', 'lab', 'guest', 'firewall.nft');

function agentLayerSources(): Array<[source: string, target: string]> {
  // The guest runs what a fleet installs: the single executable, no node and no node_modules.
  return [
    [path.join(projectRoot(), 'harness', 'lab', 'guest', 'init.sh'), 'init'],
    [LAB_GUEST_FIREWALL, 'etc/flinch-lab/firewall.nft'],
    [guestAgentExecutable(), 'usr/bin/flinch-agent'],
  ];
}

async function buildAgentLayer(output: string, files: Array<[string, string]>): Promise<void> {
  const stage = `${output}.stage`;
  rmSync(stage, { recursive: true, force: true });
  for (const [source, target] of files) {
    const destination = path.join(stage, target);
    mkdirSync(path.dirname(destination), { recursive: true });
    cpSync(source, destination, { recursive: true });
  }
  chmodSync(path.join(stage, 'init'), 0o755);
  chmodSync(path.join(stage, 'usr', 'bin', 'flinch-agent'), 0o755);
  await packCpio(stage, output, false);
  rmSync(stage, { recursive: true, force: true });
}

async function buildBase(output: string, kernel: GuestKernel, modules: readonly string[], busybox: string, programs: string[]) {
  const stage = `${output}.stage`;
  rmSync(stage, { recursive: true, force: true });
  for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/flinch', 'proc', 'sys', 'dev', 'tmp', 'run', 'opt/flinch']) {
    mkdirSync(path.join(stage, dir), { recursive: true });
  }
  copyFileSync(busybox, path.join(stage, 'bin', 'busybox'));
  chmodSync(path.join(stage, 'bin', 'busybox'), 0o755);
  const { stdout: applets } = await runCommand(busybox, ['--list']);
  for (const applet of applets.split('\n').filter(Boolean)) {
    if (applet === 'ip') continue; // iproute2's ip replaces busybox's
    const link = path.join(stage, 'bin', applet);
    if (!existsSync(link)) symlinkSync('busybox', link);
  }

  // The agent is a Node single executable: it needs node's shared libraries (glibc, libstdc++), not node itself.
  const dynamic = [process.execPath];
  for (const program of programs) {
    const target = path.join(stage, 'usr', 'sbin', path.basename(program));
    copyFileSync(program, target);
    chmodSync(target, 0o755);
    dynamic.push(program);
  }
  for (const name of XTABLES_LINKS) symlinkSync('xtables-nft-multi', path.join(stage, 'usr', 'sbin', name));
  // xtables extensions are dlopen()ed, so ldd of the binary does not name them: copy them and their libraries.
  const xtablesDir = '/usr/lib/x86_64-linux-gnu/xtables';
  if (existsSync(xtablesDir)) {
    cpSync(xtablesDir, path.join(stage, xtablesDir), { recursive: true });
    dynamic.push(...readdirSync(xtablesDir).map((f) => path.join(xtablesDir, f)));
  }
  for (const library of await sharedLibraries(dynamic)) {
    const target = path.join(stage, library);
    mkdirSync(path.dirname(target), { recursive: true });
    if (!existsSync(target)) copyFileSync(library, target);
  }
  for (const file of ['/etc/protocols', '/etc/services', '/etc/ethertypes']) {
    if (existsSync(file)) copyFileSync(file, path.join(stage, file));
  }
  if (existsSync('/etc/iproute2')) cpSync('/etc/iproute2', path.join(stage, 'etc', 'iproute2'), { recursive: true });
  writeFileSync(path.join(stage, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(path.join(stage, 'etc', 'group'), 'root:x:0:\n');

  const order = await modulesWithDependencies(kernel, modules);
  const guestPaths: string[] = [];
  for (const module of order) {
    const relative = path.relative(kernel.modulesRoot!, module);
    const target = path.join(stage, relative);
    mkdirSync(path.dirname(target), { recursive: true });
    copyFileSync(module, target);
    guestPaths.push(`/${relative}`);
  }
  writeFileSync(path.join(stage, 'etc', 'flinch', 'modules.order'), `${guestPaths.join('\n')}\n`);
  await packCpio(stage, output, true);
  rmSync(stage, { recursive: true, force: true });
}

/** Every shared library the given executables load, from `ldd`. */
export async function sharedLibraries(executables: readonly string[]): Promise<string[]> {
  const libraries = new Set<string>();
  for (const executable of executables) {
    let stdout = '';
    try {
      ({ stdout } = await runCommand('ldd', [executable]));
    } catch {
      continue; // "not a dynamic executable": nothing to add
    }
    for (const match of stdout.matchAll(/(\/\S+)\s+\(0x/g)) libraries.add(match[1]!);
  }
  return [...libraries].sort();
}

async function packCpio(stage: string, output: string, compress: boolean): Promise<void> {
  const tmp = `${output}.tmp`;
  const compressor = compress ? ' | zstd -q -T0 -3' : '';
  await runCommand('bash', ['-o', 'pipefail', '-c', `find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet${compressor} > "$1"`, 'pack', tmp], {
    cwd: stage,
  });
  renameSync(tmp, output);
}

async function concatenate(parts: readonly string[], output: string): Promise<void> {
  const tmp = `${output}.tmp`;
  const out = createWriteStream(tmp);
  for (const part of parts) await pipeline(createReadStream(part), out, { end: false });
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  renameSync(tmp, output);
}

function fingerprint(file: string): string {
  const stat = statSync(file);
  return `${file}:${stat.size}:${stat.mtimeMs}`;
}

function hashOf(parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 12);
}
