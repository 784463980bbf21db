import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, printable, UserError } from '../../contract/command-line.js';
import { ip, listLinks } from '../../system/ip.js';
import { QmpClient, QmpTimeoutError } from '../../system/qemu/qmp-client.js';
import { machineTypesOf, qemuBinaryVersion, qemuEnvironment, runningMachineType } from '../../system/qemu/qemu-vm.js';
import { keyvalGet, parseKeyval, parseQemuArguments } from '../../system/qemu/qemu-command-line.js';
import { findExecutable, runCommand } from '../../system/run-command.js';
import { shellQuote } from '../../system/xl.js';
import { processAlive, processArguments, processExecutable, processListeningOn } from '../../system/unix-socket-owner.js';
import type { FaultName, MigrationDriver, MigrationTiming } from '../drivers/migration-driver.js';
import { MigrationFailedError, PAUSE_EVENT_WAIT_MS, qemuFigures, waitForMigration, waitUntilRunning, watchPause } from '../drivers/qmp-driver.js';
import { hostNowMs } from '../host-clock.js';
import { baseOfPath, planUpgrade, upgradeArguments, type Move, type UpgradeFacts, type UpgradePlan } from './upgrade-plan.js';

export interface QemuUpgradeOptions {
  /** The running QEMU's QMP socket. */
  qmpSocket: string;
  /** The QEMU to move the guest to. */
  newBinary: string;
  /** Where the new process's start-up log (and its pid file, when the old one had none) are kept. */
  workDir: string;
  timeoutMs: number;
}

/** What was found behind the socket, before anything changed. */
export interface RunningQemu {
  pid: number;
  executable: string;
  version: string;
  argv: string[];
  status: string;
  /** The guest NICs' MACs, as the command line gives them (how an agent's hello is matched to this guest). */
  macs: string[];
}

/** What an upgrade did, for the terminal and for upgrade.json. */
export interface UpgradeOutcome {
  old: { pid: number; executable: string; version: string };
  new: { pid: number; executable: string; version: string; qmpSocket: string; pidfile: string };
  machineType: string;
  moves: Move[];
  /** Interfaces the old process used and nobody does now: the user's, so flinch leaves them. */
  leftAlone: string[];
  timing: MigrationTiming;
  commandLine: string[];
}

const QMP_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 60_000;
const OLD_EXIT_TIMEOUT_MS = 15_000;

/**
 * `flinch qemu-upgrade`: the guest of a running QEMU moved to another QEMU binary on the same host by a live
 * migration (libvirt's same-host upgrade, seeds 002 and 004), leaving the new process running it. As a migration
 * driver it migrates once per call; each call moves the guest to a fresh process of the new binary.
 */
export class QemuUpgradeDriver implements MigrationDriver {
  readonly name = 'qemu-upgrade';
  readonly faults: readonly FaultName[] = [];
  private qmp: QmpClient | null = null;
  private socket: string;
  running: RunningQemu | null = null;
  plan: UpgradePlan | null = null;
  outcome: UpgradeOutcome | null = null;
  private newVersion = '';
  private pidfileForNew: string | null = null;

  constructor(private readonly options: QemuUpgradeOptions) {
    this.socket = path.resolve(options.qmpSocket);
  }

  /** Finds the QEMU, reads it and plans the new process; refuses, changing nothing, what cannot be moved. */
  async prepare(): Promise<void> {
    const newBinary = findExecutable(this.options.newBinary);
    if (!newBinary) throw new UserError(`--to ${this.options.newBinary}: not an executable`, EXIT.usage);
    this.options.newBinary = newBinary;
    const running = await this.inspect();
    this.running = running;
    const machineType = await this.machineType();
    this.newVersion = await binaryVersion(newBinary);
    const supported = await machineTypesOf(newBinary);
    if (!supported.has(machineType)) {
      throw new UserError(`${newBinary} (QEMU ${this.newVersion}) has no machine type ${machineType}, which the guest runs: it cannot take this guest`, EXIT.usage);
    }
    const facts: UpgradeFacts = {
      qmpSocket: this.socket,
      machineType,
      links: new Map((await listLinks()).map((l) => [l.ifname, { master: l.master ?? null, mtu: l.mtu }])),
      newPath: freshPath,
      newTapName: (old) => freshTapName(old, facts.links),
      freePorts: await freeTcpPorts(4),
      freeVncDisplays: await freeVncDisplays(2),
    };
    const plan = planUpgrade(running.argv.slice(1), facts);
    if (plan.refusals.length > 0) {
      throw new UserError(`cannot upgrade QEMU PID ${running.pid} in place: ${plan.refusals.join('; ')}`, EXIT.usage);
    }
    this.plan = plan;
    this.pidfileForNew = plan.pidfile ? freshPath(plan.pidfile, plan.oldPidfile) : path.join(path.resolve(this.options.workDir), 'qemu.pid');
  }

  /** The new process's full command line, as `--dry-run` prints it. */
  commandLine(): string[] {
    return [this.options.newBinary, ...upgradeArguments(this.plan!, this.newPidfile())];
  }

  async migrate(): Promise<MigrationTiming> {
    const running = this.running!;
    const plan = this.plan!;
    const old = this.qmp!;
    mkdirSync(this.options.workDir, { recursive: true });
    const createdTaps: string[] = [];
    let newPid: number | null = null;
    let destination: QmpClient | null = null;
    let switched = false;
    const migrationDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-upgrade-'));
    try {
      for (const tap of plan.taps) {
        await ip(['tuntap', 'add', 'dev', tap.name, 'mode', 'tap', ...(tap.multiQueue ? ['multi_queue'] : [])]);
        createdTaps.push(tap.name);
        await ip(['link', 'set', tap.name, 'master', tap.bridge, 'mtu', String(tap.mtu), 'up']);
      }
      newPid = await this.startNewProcess();
      destination = await QmpClient.connect(plan.controlSocket!, QMP_TIMEOUT_MS);
      const uri = `unix:${path.join(migrationDir, 'migrate.sock')}`;
      await destination.execute('migrate-incoming', { uri });
      const pause = watchPause(old, destination);
      const startedAtMs = hostNowMs();
      await old.execute('migrate', { uri });
      const reply = await waitForMigration(old, this.options.timeoutMs, 50);
      const completedAtMs = hostNowMs();
      // From here the guest's state is in the new process: whatever fails next, that process is never killed.
      switched = true;
      // A guest that was paused stays paused on arrival, as QEMU carries the run state across.
      if (running.status === 'running') await waitUntilRunning(destination, this.options.timeoutMs, 50);
      const stoppedAndResumed = await pause.settled(running.status === 'running' ? PAUSE_EVENT_WAIT_MS : 0);
      const timing: MigrationTiming = { startedAtMs, completedAtMs, pause: stoppedAndResumed, ...qemuFigures(reply) };
      await this.retireOld(running.pid);
      const pidfile = this.settlePidfile(plan);
      this.outcome = {
        old: { pid: running.pid, executable: running.executable, version: running.version },
        new: { pid: newPid, executable: this.options.newBinary, version: this.newVersion, qmpSocket: plan.controlSocket!, pidfile },
        machineType: plan.machineType,
        moves: plan.moves,
        leftAlone: plan.taps.map((t) => `tap ${t.replaces} on ${t.bridge}, no longer used (ip link del ${t.replaces} once nothing else needs it)`),
        timing,
        commandLine: this.commandLine(),
      };
      writeFileSync(path.join(this.options.workDir, 'upgrade.json'), `${JSON.stringify(this.outcome, null, 2)}\n`);
      // Upgrading again starts from the new process, behind its own QMP socket.
      old.close();
      this.qmp = destination;
      destination = null;
      this.socket = plan.controlSocket!;
      this.running = { ...running, pid: newPid, executable: this.options.newBinary, version: this.newVersion, argv: processArguments(newPid) };
      return timing;
    } catch (error) {
      if (switched) {
        throw new MigrationFailedError(`the guest was moved to the new QEMU PID ${newPid} (QMP ${plan.controlSocket}), but then: ${(error as Error).message}`);
      }
      // The old QEMU resumes its guest itself when a migration fails; what flinch started goes, the guest stays.
      if (newPid !== null && processAlive(newPid)) {
        process.kill(newPid, 'SIGKILL');
        for (const until = Date.now() + 5000; processAlive(newPid) && Date.now() < until;) await sleep(50);
      }
      for (const tap of createdTaps) await ip(['link', 'del', tap]).catch(() => undefined);
      const still = processAlive(running.pid) ? `the guest still runs in QEMU PID ${running.pid}` : `QEMU PID ${running.pid} is gone too`;
      if (error instanceof UserError) throw new UserError(`${error.message}; ${still}`, error.exitCode);
      throw new MigrationFailedError(`the upgrade failed (${(error as Error).message}); ${still}`);
    } finally {
      destination?.close();
      rmSync(migrationDir, { recursive: true, force: true });
    }
  }

  async injectFault(): Promise<null> {
    return null;
  }

  async cleanup(): Promise<void> {
    this.qmp?.close();
    this.qmp = null;
  }

  /** The guest's RAM, as QEMU sizes it. */
  async memoryMiB(): Promise<number> {
    const summary = await this.qmp!.execute<{ 'base-memory'?: number }>('query-memory-size-summary').catch(() => ({ 'base-memory': 0 }));
    return Math.round((summary['base-memory'] ?? 0) / 1048576);
  }

  /** Where the guest runs now. */
  where(): string {
    return `QEMU PID ${this.running?.pid ?? '?'}`;
  }

  private async inspect(): Promise<RunningQemu> {
    const socket = this.socket;
    if (!existsSync(socket)) throw new UserError(`--qmp ${socket}: no such socket`, EXIT.usage);
    if (!statSync(socket).isSocket()) throw new UserError(`--qmp ${socket}: not a socket`, EXIT.usage);
    const pid = processListeningOn(socket);
    if (pid === null) throw new UserError(`--qmp ${socket}: no process listens on it in this network namespace (run flinch where the QEMU runs: ip netns exec NAME flinch ...)`, EXIT.usage);
    const executable = processExecutable(pid);
    const argv = processArguments(pid);
    if (!/qemu-system-/.test(path.basename(executable.replace(/ \(deleted\)$/, '')))) {
      throw new UserError(`--qmp ${socket}: held by PID ${pid} (${printable(path.basename(executable))}), not a QEMU system emulator`, EXIT.usage);
    }
    try {
      this.qmp = await QmpClient.connect(socket, QMP_TIMEOUT_MS);
    } catch (error) {
      const why = error instanceof QmpTimeoutError ? 'no QMP greeting: another client (libvirt?) holds this monitor, or it is a human monitor, not QMP' : (error as Error).message;
      throw new UserError(`--qmp ${socket}: ${why}`, EXIT.usage);
    }
    const v = this.qmp.version;
    const version = v ? `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}` : 'unknown';
    const { status } = await this.qmp.execute<{ status: string }>('query-status');
    if (status !== 'running' && status !== 'paused') {
      throw new UserError(`QEMU PID ${pid} is ${status}: only a running or paused guest can be upgraded (not one still migrating in or out)`, EXIT.usage);
    }
    return { pid, executable, version, argv, status, macs: guestMacs(argv.slice(1)) };
  }

  private async machineType(): Promise<string> {
    return runningMachineType(this.qmp!);
  }

  /** Where the new process writes its pid: beside the user's pid file, or in the work folder (chosen with the plan). */
  private newPidfile(): string {
    return this.pidfileForNew!;
  }

  /** Starts the new QEMU detached (-daemonize): its parent exits once the process is ready, with its errors said. */
  private async startNewProcess(): Promise<number> {
    const pidfile = this.newPidfile();
    const logFile = path.join(this.options.workDir, 'qemu-new.log');
    const log = openSync(logFile, 'w');
    try {
      const child = spawn(this.options.newBinary, upgradeArguments(this.plan!, pidfile), { stdio: ['ignore', log, log], detached: true, env: qemuEnvironment(this.options.newBinary) });
      const code = await new Promise<number | string>((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve(`did not get ready within ${START_TIMEOUT_MS / 1000} s`);
        }, START_TIMEOUT_MS);
        child.once('error', (error) => {
          clearTimeout(timer);
          resolve(error.message);
        });
        child.once('exit', (status, signal) => {
          clearTimeout(timer);
          resolve(status ?? `killed by ${signal}`);
        });
      });
      if (code !== 0) {
        const lastLine = readFileSync(logFile, 'utf8').trim().split('\n').slice(-1)[0] ?? '';
        throw new MigrationFailedError(`the new QEMU ${typeof code === 'number' ? `exited with ${code}` : code}: ${lastLine}`);
      }
    } finally {
      closeSync(log);
    }
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) throw new MigrationFailedError(`the new QEMU wrote no live PID to ${pidfile}`);
    return pid;
  }

  /** Quits the old process (not flinch's child: it is asked, and waited for by its PID). */
  private async retireOld(pid: number): Promise<void> {
    await this.qmp!.execute('quit', undefined, QMP_TIMEOUT_MS).catch(() => undefined);
    for (const until = Date.now() + OLD_EXIT_TIMEOUT_MS; processAlive(pid); await sleep(50)) {
      if (Date.now() > until) throw new MigrationFailedError(`the guest runs in the new QEMU, but the old QEMU PID ${pid} did not quit within ${OLD_EXIT_TIMEOUT_MS / 1000} s`);
    }
  }

  /**
   * The user's pid file names the new process once the old one has gone (and removed it): a rename keeps QEMU's
   * lock on it, which follows the file, not its name.
   */
  private settlePidfile(plan: UpgradePlan): string {
    const written = this.newPidfile();
    if (!plan.pidfile) return written;
    renameSync(written, plan.pidfile);
    return plan.pidfile;
  }
}

/** The MACs of the guest's NICs: `mac=` on each -device and -nic. */
export function guestMacs(argv: readonly string[]): string[] {
  let options;
  try {
    options = parseQemuArguments(argv);
  } catch {
    return [];
  }
  return options
    .filter((o) => (o.name === 'device' || o.name === 'nic') && o.value !== null)
    .map((o) => keyvalGet(parseKeyval(o.value!, o.name === 'device' ? 'driver' : 'type'), 'mac')?.toLowerCase())
    .filter((mac): mac is string => mac !== undefined && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac));
}

/** A path beside `oldPath` that nothing uses: `NAME.upgraded-N`, an earlier upgrade's suffix replaced. */
export function freshPath(oldPath: string, avoid: string | null = null): string {
  const base = baseOfPath(oldPath);
  for (let n = 1; ; n += 1) {
    const candidate = `${base}.upgraded-${n}`;
    if (candidate !== oldPath && candidate !== avoid && !existsSync(candidate)) return candidate;
  }
}

/** A tap name of at most 15 bytes (IFNAMSIZ) that no interface here has: `NAME-uN`. */
function freshTapName(old: string, links: ReadonlyMap<string, unknown>): string {
  const base = old.replace(/-u\d+$/, '');
  for (let n = 1; ; n += 1) {
    const suffix = `-u${n}`;
    const candidate = `${base.slice(0, 15 - suffix.length)}${suffix}`;
    if (candidate !== old && !links.has(candidate)) return candidate;
  }
}

async function binaryVersion(binary: string): Promise<string> {
  const version = await qemuBinaryVersion(binary).catch((error: Error) => {
    throw new UserError(`--to ${binary}: does not run (${error.message.split('\n')[0]})`, EXIT.usage);
  });
  if (!version) throw new UserError(`--to ${binary}: not a QEMU (its -version names no QEMU version)`, EXIT.usage);
  return version.split(' ')[0]!;
}

/** Ports the kernel hands out as free, for the listeners both processes want (closed again before QEMU binds). */
async function freeTcpPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i += 1) ports.push(await listenBriefly(0));
  return ports;
}

async function freeVncDisplays(count: number): Promise<number[]> {
  const displays: number[] = [];
  for (let display = 1; display < 100 && displays.length < count; display += 1) {
    if (await listenBriefly(5900 + display).then(() => true, () => false)) displays.push(display);
  }
  return displays;
}

function listenBriefly(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

/** What `--dry-run` shows: the QEMU found, what would move, and the new process's command line as a shell would take it. */
export function describePlan(driver: QemuUpgradeDriver): string {
  const { running, plan } = driver;
  const commandLine = driver.commandLine();
  return terminalLines([
    `would move QEMU ${running!.version} (PID ${running!.pid}) to ${commandLine[0]}, machine ${plan!.machineType}`,
    ...plan!.moves.map((m) => moveLine('would move', m)),
    commandLine.map(shellQuote).join(' '),
  ]);
}

/** What the terminal shows of an upgrade: where the guest went, what it cost, and what moved. */
export function describeUpgrade(outcome: UpgradeOutcome): string {
  const t = outcome.timing;
  const pause = t.pause ? `the guest paused ${Math.round(t.pause.resumedAtMs - t.pause.stoppedAtMs)} ms` : 'no pause measured';
  return terminalLines([
    `QEMU ${outcome.old.version} (PID ${outcome.old.pid}) -> QEMU ${outcome.new.version} (PID ${outcome.new.pid}), machine ${outcome.machineType}: ${pause} (QEMU's downtime ${t.downtimeMs ?? '?'} ms, migration ${t.totalMs ?? '?'} ms)`,
    `QMP now at ${outcome.new.qmpSocket}; pid file ${outcome.new.pidfile}`,
    ...outcome.moves.map((m) => moveLine('moved', m)),
    ...outcome.leftAlone.map((l) => `left alone: ${l}`),
  ]);
}

function moveLine(verb: string, m: Move): string {
  return `${verb} ${m.what}: ${m.from} -> ${m.to}`;
}

function terminalLines(lines: readonly string[]): string {
  return `${lines.map(printable).join('\n')}\n`;
}
