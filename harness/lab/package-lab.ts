import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import { randomBytes } from 'node:crypto';
import type { AgentRecord } from '../collector/agent-record.js';
import { CollectorServer } from '../collector/collector-server.js';
import { FleetKeyring } from '../collector/keyring.js';
import { ReportStore } from '../collector/report-store.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { FLINCH_VERSION } from '../../contract/version.js';
import { hostNowMs } from '../host-clock.js';
import { QemuVm, resolveQemuBinary, serialLogPath } from '../../system/qemu/qemu-vm.js';
import { guestKernelFrom } from './debian-kernel.js';
import { GuestConsole } from './guest-console.js';
import { labNetworkFor, readPlanFromEnvironment, runInsideNamespace, withLabNetwork, type InsideStep, type LabNetwork } from './lab-network.js';
import { buildSystemdGuestDisk, debootstrapRootfs, SYSTEMD_GUEST_ROOTFS, type PackageCheckSuite } from './systemd-guest.js';

/**
 * `flinch package-check`: installs the .deb into a fresh Debian 12 guest with systemd (QEMU, TCG), and checks what an
 * administrator would: the unit is not enabled by the install, the enabled service reports to a collector, survives a
 * kill -9 through systemd's restart, refuses a bad config without a restart loop, and how `systemd-analyze security`
 * rates it inside a real systemd.
 */
export interface PackageCheckOptions {
  deb: string;
  /** The harness's package (flinch) too: installed beside the agent and checked in the booted guest. */
  hostDeb: string | null;
  outDir: string;
  cacheDir: string;
  qemuBinary: string;
  memoryMiB: number;
  bootTimeoutMs: number;
  collectorPort: number;
  /** The Debian release of the guest (bullseye, bookworm, trixie), with that release's cloud kernel. */
  suite: PackageCheckSuite;
}

export interface PackageCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface PackageCheckResults {
  schema: 'flinch.package-check/v1';
  /** The guest's Debian release and kernel. */
  suite?: string;
  kernel?: string;
  deb: string;
  debBytes: number;
  installedBinaryBytes: number | null;
  enabledAfterInstall: string;
  bootToHelloMs: number | null;
  restartToHelloMs: number | null;
  securityExposure: string | null;
  checks: PackageCheck[];
}

export const PACKAGE_CHECK_INSIDE: InsideStep = { subcommand: 'package-check-inner', planVariable: 'FLINCH_PACKAGE_CHECK_PLAN', parent: 'flinch package-check' };
export const PACKAGE_CHECK_RESULTS = 'package-check.json';
const GUEST_MAC = '52:54:00:f1:1c:02';
const AGENT_ID = 'deb-install-check';

interface InnerPlan {
  options: PackageCheckOptions;
  network: LabNetwork;
  kernel: string;
  kernelPackage: string;
  disk: string;
  initrd: string;
  enabledAfterInstall: string;
  fleetSecret: string;
}

export async function runPackageCheck(options: PackageCheckOptions, log: (line: string) => void): Promise<PackageCheckResults> {
  if (process.getuid?.() !== 0) throw new UserError('flinch package-check needs root: it debootstraps, chroots and creates a network namespace', EXIT.needsRoot);
  for (const deb of [options.deb, options.hostDeb].filter((d): d is string => d !== null)) {
    if (!existsSync(deb)) throw new UserError(`${deb}: no such package; build it with npm run package`, EXIT.usage);
  }
  resolveQemuBinary(options.qemuBinary);
  mkdirSync(options.outDir, { recursive: true });
  rmSync(path.join(options.outDir, PACKAGE_CHECK_RESULTS), { force: true });
  const kernel = await guestKernelFrom(options.cacheDir, options.suite, log);
  const rootfs = await debootstrapRootfs(options.cacheDir, log, SYSTEMD_GUEST_ROOTFS, options.suite);
  const network = labNetworkFor(`pkg${process.pid}`);
  const fleetSecret = randomBytes(32).toString('hex');
  log(`installing ${path.basename(options.deb)} into a copy of the Debian tree`);
  const built = await buildSystemdGuestDisk({
    rootfs,
    kernel,
    deb: options.deb,
    hostDeb: options.hostDeb,
    agentConfig: `# written by flinch package-check\ncollector: ws://${network.hostAddress}:${options.collectorPort}\nagent-id: ${AGENT_ID}\ntoken-file: /etc/flinch/token\naccept-announce: true\nremediate: dry-run\nstate-dir: /var/lib/flinch\n`,
    agentToken: agentKeyFor(fleetSecret, AGENT_ID),
    hostname: 'flinch-deb-guest',
    mac: GUEST_MAC,
    address: `${network.guestAddress}/${network.prefixLength}`,
    gateway: network.hostAddress,
    workDir: path.join(options.outDir, 'guest'),
  });
  return withLabNetwork(network, async () => {
    const plan: InnerPlan = { options, network, kernel: kernel.vmlinuz, kernelPackage: kernel.packageName, disk: built.disk, initrd: built.initrd, enabledAfterInstall: built.enabledAfterInstall, fleetSecret };
    const code = await runInsideNamespace(network.netns, PACKAGE_CHECK_INSIDE, plan);
    const resultsFile = path.join(options.outDir, PACKAGE_CHECK_RESULTS);
    if (!existsSync(resultsFile)) throw new Error(`the package check stopped inside the lab namespace (exit ${code}) before writing results`);
    if (code !== 0) process.exitCode = code;
    return JSON.parse(readFileSync(resultsFile, 'utf8')) as PackageCheckResults;
  });
}

export function readPackageCheckPlan(): InnerPlan {
  return readPlanFromEnvironment<InnerPlan>(PACKAGE_CHECK_INSIDE);
}

export async function runPackageCheckInside(plan: InnerPlan, log: (line: string) => void): Promise<void> {
  const { options, network } = plan;
  const logsDir = path.join(options.outDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const checks: PackageCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  const results: PackageCheckResults = {
    schema: 'flinch.package-check/v1',
    suite: options.suite,
    kernel: plan.kernelPackage,
    deb: path.basename(options.deb),
    debBytes: statSync(options.deb).size,
    installedBinaryBytes: null,
    enabledAfterInstall: plan.enabledAfterInstall,
    bootToHelloMs: null,
    restartToHelloMs: null,
    securityExposure: null,
    checks,
  };
  check('the install does not enable the unit', plan.enabledAfterInstall === 'disabled', `systemctl is-enabled said "${plan.enabledAfterInstall}"`);

  const store = new ReportStore(':memory:');
  const collector = new CollectorServer({
    host: network.hostAddress, port: options.collectorPort, store, keyring: new FleetKeyring(plan.fleetSecret), keepInMemory: true,
    timeProbeIntervalMs: 1000, log: (l) => log(`collector: ${l}`),
  });
  await collector.start();
  const consoleSocket = path.join(logsDir, 'console.sock');
  const bootStart = hostNowMs();
  const firstHello = nextHello(collector, options.bootTimeoutMs);
  firstHello.catch(() => undefined); // awaited below; a boot failure may come first
  const vm = await QemuVm.launch({
    qemuBinary: options.qemuBinary,
    name: 'deb-guest',
    runDir: logsDir,
    kernel: plan.kernel,
    initrd: plan.initrd,
    append: 'console=ttyS0 root=/dev/vda rw panic=-1',
    disk: plan.disk,
    consoleSocket,
    memoryMiB: options.memoryMiB,
    tap: network.taps[0],
    mac: GUEST_MAC,
    incoming: false,
  });
  let guest: GuestConsole | null = null;
  try {
    log(`booting Debian with systemd (TCG, ${options.memoryMiB} MiB); console log ${serialLogPath(vm.spec)}`);
    guest = await GuestConsole.connect(consoleSocket);
    await guest.waitReady(options.bootTimeoutMs);
    const agent = await firstHello.catch(async (error: Error) => {
      const journal = await guest!.run('systemctl status --no-pager flinch-agent; journalctl -u flinch-agent -n 30 --no-pager -o cat', 10_000);
      writeFileSync(path.join(logsDir, 'journal-no-hello.txt'), journal.output);
      throw new Error(`${error.message}; the agent's journal: ${journal.output.split('\n').slice(-4).join(' | ')}`);
    });
    results.bootToHelloMs = Math.round(hostNowMs() - bootStart);
    check('the enabled service starts at boot and says hello to the collector', true, `${agent.agentId} after ${(results.bootToHelloMs / 1000).toFixed(1)} s`);

    results.installedBinaryBytes = Number(await guest.check('stat -c %s /usr/bin/flinch-agent'));
    const active = await guest.run('systemctl is-active flinch-agent');
    check('the service is active', active.output === 'active', active.output);

    await sleep(3000); // let observations flow, so a probe that the sandbox broke would have said so
    // xen is unavailable on a KVM/TCG guest, as it should be; "failed" would mean the sandbox took something a probe needs.
    const statuses = agent.observations.flatMap((o) => (o.observation.kind === 'probe-status' ? [o.observation] : []));
    const failed = statuses.filter((s) => s.status === 'failed');
    check(
      'no probe fails inside the hardened unit',
      statuses.length > 0 && failed.length === 0,
      statuses.map((s) => `${s.probe} ${s.status}${s.reason ? ` (${s.reason})` : ''}`).join('; ') || 'no probe status seen',
    );

    const pid = (await guest.check('systemctl show -p MainPID --value flinch-agent')).trim();
    const restartHello = nextHello(collector, 60_000);
    const killedAt = hostNowMs();
    await guest.check(`kill -9 ${pid}`);
    await restartHello;
    results.restartToHelloMs = Math.round(hostNowMs() - killedAt);
    const restarts = (await guest.check('systemctl show -p NRestarts --value flinch-agent')).trim();
    const newPid = (await guest.check('systemctl show -p MainPID --value flinch-agent')).trim();
    check(
      'kill -9 is followed by a restart that reports again',
      restarts === '1' && newPid !== pid && newPid !== '0',
      `NRestarts=${restarts}, PID ${pid} → ${newPid}, hello again after ${(results.restartToHelloMs / 1000).toFixed(1)} s (${agent.connections} connections)`,
    );

    const security = await guest.run('systemd-analyze security --no-pager flinch-agent.service');
    writeFileSync(path.join(logsDir, 'systemd-analyze-security.txt'), security.output);
    results.securityExposure = /Overall exposure level for flinch-agent\.service:\s*(.+)$/m.exec(security.output)?.[1]?.trim() ?? null;
    check('systemd-analyze security rates the unit', results.securityExposure !== null, results.securityExposure ?? security.output.split('\n').slice(-2).join(' '));

    // A bad config must stop the service with its reason, and systemd must not retry it. `systemctl restart` resets
    // NRestarts, so after it any count above 0 is systemd's own retry (RestartSec=2s, well inside the 5 s waited).
    await guest.check("printf 'colector: ws://typo\\n' >> /etc/flinch/agent.yaml");
    await guest.run('systemctl restart flinch-agent');
    // Node starts slowly under TCG: the new process may take seconds to reach its config. Wait for it to fail, then
    // 5 s more, in which RestartSec=2s would have restarted it had systemd been going to.
    let state = '';
    for (let waited = 0; waited < 60_000 && state !== 'failed'; waited += 500) {
      state = (await guest.run('systemctl is-active flinch-agent')).output;
      if (state !== 'failed') await sleep(500);
    }
    await sleep(5000);
    state = (await guest.run('systemctl is-active flinch-agent')).output;
    const status = (await guest.check('systemctl show -p ExecMainStatus --value flinch-agent')).trim();
    const restartsAfter = (await guest.check('systemctl show -p NRestarts --value flinch-agent')).trim();
    const journal = (await guest.run('journalctl -u flinch-agent -n 20 --no-pager -o cat')).output;
    writeFileSync(path.join(logsDir, 'journal-bad-config.txt'), journal);
    check(
      'a bad config stops the service with its reason and no restart loop',
      state === 'failed' && status === '78' && restartsAfter === '0' && /agent\.yaml:\d+: unknown key "colector"/.test(journal),
      `is-active=${state}, exit status ${status}, automatic restarts since ${restartsAfter}, journal: ${journal.split('\n').find((l) => l.includes('agent.yaml')) ?? '(no line naming agent.yaml)'}`,
    );
    if (options.hostDeb) await checkHostPackage(guest, check, plan.fleetSecret);
  } finally {
    writeFileSync(path.join(options.outDir, PACKAGE_CHECK_RESULTS), `${JSON.stringify(results, null, 2)}\n`);
    guest?.close();
    await vm.stop();
    await collector.stop();
    store.close();
  }
  if (checks.some((c) => !c.ok)) process.exitCode = EXIT.worseThanExpected;
}

/**
 * The harness's package on a Debian 12 that has no Node.js: the command runs on the runtime it ships, its native
 * modules load (SQLite, in a collector's store), its key derivation agrees with this one, and it removes cleanly.
 */
async function checkHostPackage(guest: GuestConsole, check: (name: string, ok: boolean, detail: string) => void, fleetSecret: string): Promise<void> {
  const version = await guest.run('flinch --version', 120_000);
  const systemNode = await guest.run('command -v node nodejs');
  check('flinch runs on the runtime it ships, with no system Node.js', version.exitCode === 0 && version.output === FLINCH_VERSION && systemNode.output === '',
    `flinch --version said "${version.output}"; system node: ${systemNode.output || 'none'}`);
  await guest.check(`umask 077; printf '%s\\n' ${fleetSecret} > /root/fleet.secret`);
  const token = await guest.run('flinch token --fleet-secret /root/fleet.secret --agent-id host-package-check', 120_000);
  const expected = agentKeyFor(fleetSecret, 'host-package-check');
  check("flinch token derives the agent's key as the collector does", token.output === expected, token.output === expected ? 'the same key' : `got "${token.output}"`);
  // The collector opens its SQLite store (better-sqlite3's addon) and the fleet status reads it back.
  await guest.check('flinch collect --listen 127.0.0.1:7499 --store /root/store.db --no-auth >/root/collect.log 2>&1 & echo $! > /root/collect.pid');
  let listening = '';
  for (let waited = 0; waited < 120_000 && !/listening on/.test(listening); waited += 1000) {
    listening = (await guest.run('cat /root/collect.log')).output;
    if (!/listening on/.test(listening)) await sleep(1000);
  }
  const status = await guest.run('flinch fleet status --store /root/store.db --json', 120_000);
  await guest.run('kill $(cat /root/collect.pid)');
  let agents: unknown = null;
  try {
    agents = (JSON.parse(status.output) as { agents?: unknown }).agents;
  } catch {
    // shown below
  }
  check('flinch collect opens its SQLite store and flinch fleet status reads it', /listening on ws:\/\/127\.0\.0\.1:7499/.test(listening) && status.exitCode === 0 && typeof agents === 'number',
    `${listening.split('\n').find((l) => l.includes('listening')) ?? listening.split('\n').slice(-1)[0]}; fleet status exit ${status.exitCode}`);
  const man = await guest.run('test -s /usr/share/man/man1/flinch.1.gz && zcat /usr/share/man/man1/flinch.1.gz | grep -c "^.SH"');
  check('the man page is installed', man.exitCode === 0 && Number(man.output) >= 5, `${man.output} sections`);
  const removed = await guest.run('dpkg -r flinch >/dev/null && test ! -e /usr/lib/flinch && test ! -e /usr/bin/flinch && echo gone', 120_000);
  check('dpkg -r removes it, leaving nothing under /usr/lib/flinch', removed.output === 'gone', removed.output || `exit ${removed.exitCode}`);
}

function nextHello(collector: CollectorServer, timeoutMs: number): Promise<AgentRecord> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      collector.off('hello', onHello);
      reject(new Error(`no agent said hello within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const onHello = (agent: AgentRecord) => {
      clearTimeout(timer);
      resolve(agent);
    };
    collector.once('hello', onHello);
  });
}
