import { DEFAULT_RETENTION } from './collector/report-store.js';
import { DEFAULT_LIVENESS_INTERVAL_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_PER_ADDRESS } from './collector/collector-server.js';
import net from 'node:net';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { existsSync, writeFileSync } from 'node:fs';
import { FAULTS, parseFaultMatrix, type FaultName } from './drivers/migration-driver.js';
import { readLabResults, VERDICT_ORDER, type ExpectedVerdict } from './report/lab-results.js';
import { OUTPUT_FORMATS, render, type OutputFormat } from './report/write-outputs.js';
import { agentIdArgument, createProgram, flagOf, guarded, nonNegativeInt, positiveInt, printable, EXIT, UserError } from '../contract/command-line.js';
import { agentKeyFor, readSecretFile } from '../contract/frame-signing.js';
import { runCollector } from './collector/run-collector.js';
import { isPostgresUrl, openStore, type FleetStore } from './collector/store.js';
import { renderRollout, rolloutCommand } from './rollout/rollout-command.js';
import { fleetStatus, renderFleetStatus } from './fleet/fleet-status.js';
import { DEFAULT_CAMPAIGN_OPTIONS, type CampaignOptions } from './campaign/campaign-options.js';
import type { CampaignOutcome } from './campaign/campaign-runner.js';
import { enrollment, writeEnrollment, writeSeedImage } from './enroll.js';
import { CAMPAIGN_DRIVERS, existingGuestFrom, guestCollectorListen, libvirtMigrateFlagsFrom, xenHostsFrom } from './lab/campaign-drivers.js';
import { LIBVIRT_MIGRATE_FLAGS } from './drivers/libvirt-driver.js';
import { QEMU_LAB_INSIDE, runLabInside, runQemuLab } from './lab/qemu-lab.js';
import { runSimCampaignInside, SIM_CAMPAIGN_INSIDE } from './lab/sim-lab.js';
import { renderTable } from './report/terminal-table.js';
import { controlLine } from './report/result-labels.js';
import { PACKAGE_CHECK_INSIDE, readPackageCheckPlan, runPackageCheck, runPackageCheckInside } from './lab/package-lab.js';
import type { InsideStep } from './lab/lab-network.js';
import { projectRoot } from './project-paths.js';
import { XL_METHODS } from './drivers/xl-driver.js';
import { DEFAULT_XEN_LAB_OPTIONS, runXenLab, runXenLabInside, XEN_LAB_INSIDE, type XenLabOptions } from './lab/xen/xen-lab.js';
import { isXenRelease, XEN_RELEASES } from './lab/xen/xen-artifacts.js';
import { FLINCH_VERSION } from '../contract/version.js';
import { describePlan, describeUpgrade, QemuUpgradeDriver } from './upgrade/qemu-upgrade.js';
import { runUpgradeCampaign } from './upgrade/upgrade-campaign.js';
import { fleetSecretArgument } from './collector/keyring.js';
import { isNamedGuestKernel, NAMED_GUEST_KERNELS } from './lab/debian-kernel.js';
import { PACKAGE_CHECK_SUITES, type PackageCheckSuite } from './lab/systemd-guest.js';
import { qemuFrom } from './lab/qemu-release.js';
import { anyWorse, compareCampaigns, DEFAULT_COMPARE_SETTINGS } from './compare/compare-results.js';
import { planMatrix, runMatrix } from './matrix/matrix.js';
import { COMPARE_FORMATS, renderComparison, type CompareFormat } from './compare/compare-outputs.js';

const PROGRAM = 'flinch';

interface CampaignCliOptions {
  migrations: number;
  controls: number;
  faults: string;
  expect: ExpectedVerdict;
  out: string;
  qemu: string;
  destQemu?: string;
  downtimeLimit?: number;
  bandwidth?: number;
  postcopy?: boolean;
  longPause: number;
  blackoutInterval: number;
  memory: number;
  cache: string;
  settle: number;
  guestProbes?: string[];
  guestTimeDaemon?: 'chronyd';
  agentless?: boolean;
  outsideView?: boolean;
  guestKernel?: string;
  machine?: string;
  sharedMemory?: boolean;
}

/** --xl-methods: a comma-separated list of xl's ways of moving a domain. */
function xlMethodsFrom(value: string): string[] {
  const methods = value.split(',').map((m) => m.trim()).filter(Boolean);
  const unknown = methods.filter((m) => !(XL_METHODS as readonly string[]).includes(m));
  if (methods.length === 0 || unknown.length > 0) throw new UserError(`--xl-methods: choose from ${XL_METHODS.join(', ')}`, EXIT.usage);
  return methods;
}

function probability(value: string): number {
  const p = Number(value);
  if (!Number.isFinite(p) || p <= 0 || p >= 1) throw new InvalidArgumentError('expected a number between 0 and 1');
  return p;
}

/** A share that may be 1 (a limit that is never passed), unlike a probability. */
function shareLimit(value: string): number {
  const p = Number(value);
  if (!Number.isFinite(p) || p <= 0 || p > 1) throw new InvalidArgumentError('expected a number above 0 and at most 1');
  return p;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of 0 or more');
  return n;
}

function parseExpectation(value: string): ExpectedVerdict {
  if (!(VERDICT_ORDER as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${VERDICT_ORDER.join(', ')}`);
  return value as ExpectedVerdict;
}

export function buildHarnessProgram(): Command {
  const { program, verbose, log } = createProgram(PROGRAM, 'flinch: did the guest notice its live migration, and did it lose anything?');
  /**
   * What a campaign run ends with, on the terminal and as the exit status: the table, the files, and 5 when asked to
   * fail and a migration was worse than expected. A number is the exit status of the namespace child that ran it.
   */
  const showCampaign = (result: CampaignOutcome | number, options: CampaignOptions) => {
    if (typeof result === 'number') {
      if (result !== EXIT.ok) process.exitCode = result;
      return;
    }
    if (result.alreadyComplete) log(`campaign already complete in ${options.outDir}: outputs regenerated, nothing run`);
    const controls = controlLine(result.results.migrations);
    process.stdout.write(`${renderTable(result.results.migrations)}\n${controls ? `${controls}\n` : ''}${result.alreadyComplete ? '' : `\n${Object.values(result.written).join('\n')}\n`}`);
    if (result.worseThanExpected > 0 && options.failOnUnexpected) {
      log(`${result.worseThanExpected} of ${result.results.migrations.length} migrations were worse than expected (${options.expect})`);
      process.exitCode = EXIT.worseThanExpected;
    }
  };
  /** A hidden subcommand: the part of a command that the program re-runs itself for inside a network namespace. */
  const innerCommand = (step: InsideStep, what: string, run: () => Promise<unknown>) =>
    program.command(step.subcommand, { hidden: true }).description(`internal: ${what}`).action(guarded(PROGRAM, verbose, async () => {
      await run();
    }));

  /** The campaign options; a matrix gives its QEMUs and kernels as lists of its own instead of one of each. */
  const addCampaignOptions = (command: Command, defaults: { faults: string; expect: ExpectedVerdict }, shape: 'campaign' | 'matrix' = 'campaign') =>
    (shape === 'campaign' ? addGuestOptions(command) : command)
      .option('--migrations <n>', 'migrations for each row of the fault matrix', positiveInt, DEFAULT_CAMPAIGN_OPTIONS.migrationsPerFault)
      .option('--faults <matrix>', `comma-separated rows, each none or faults joined by + (${FAULTS.join(', ')})`, defaults.faults)
      .option('--controls <n>', 'sham migrations spread among the real ones, announced and measured alike, nothing moved: their verdicts give the false-positive rate', nonNegativeInt, DEFAULT_CAMPAIGN_OPTIONS.controls)
      .option('--expect <verdict>', 'a migration whose verdict is worse fails (transparent < noticed < healed < disrupted)', parseExpectation, defaults.expect)
      .option('--out <dir>', 'results.json, junit.xml, results.tap, report.html, the journal and the logs', 'flinch-lab-results')
      .option('--machine <type>', 'QEMU machine type the guest starts on (pc, q35, pc-i440fx-7.2); every destination runs the concrete type it runs (default: pc)')
      .option('--shared-memory', 'QEMU guest: its RAM in a shared file (/dev/shm) that both QEMUs of a migration map, with x-ignore-shared: no RAM is copied (a same-host upgrade\'s way)')
      .option('--downtime-limit <ms>', 'QEMU downtime-limit for each migration', positiveInt)
      .option('--bandwidth <bytes/s>', 'QEMU max-bandwidth for each migration', positiveInt)
      .option('--postcopy', 'switch each migration to post-copy once it is under way')
      .option('--long-pause <ms>', 'how long the long-pause fault keeps the guest stopped', positiveInt, DEFAULT_CAMPAIGN_OPTIONS.longPauseMs)
      .option('--blackout-interval <ms>', 'UDP blackout probe interval, 1-10 ms (0: off)', nonNegativeInt, DEFAULT_CAMPAIGN_OPTIONS.blackoutIntervalMs)
      .option('--memory <MiB>', 'guest memory (at least 384)', positiveInt, DEFAULT_CAMPAIGN_OPTIONS.memoryMiB)
      .option('--cache <dir>', 'where the guest kernel and images are cached', DEFAULT_CAMPAIGN_OPTIONS.cacheDir)
      .option('--settle <ms>', 'how long to keep listening after each migration', positiveInt, DEFAULT_CAMPAIGN_OPTIONS.settleMs)
      .option('--outside-view', 'QEMU guest: beside the agent, also probe it with ICMP timestamps, as --agentless does (200 requests a second: on a TCG guest the agent\'s clock lag is then sometimes lost)')
      .option('--agentless', 'QEMU guest: boot it with no agent and measure from outside only (ICMP timestamps, the lab bridge); verdicts are the outside view\'s')
      .option('--guest-probes <list>', 'probes the guest agent runs (default: all)', (v: string) => v.split(',').map((p) => p.trim()).filter(Boolean))
      .addOption(new Option('--guest-time-daemon <name>', 'run a time daemon in the QEMU guest, served by the lab namespace (default: none, so the agent steps the clock itself)').choices(['chronyd']));

  const addGuestOptions = (command: Command) =>
    command
      .option('--qemu <path>', 'QEMU system emulator: a path, or a Debian release whose QEMU is fetched into the cache (bookworm: the system\'s 7.2; bookworm-backports: 10.0)', DEFAULT_CAMPAIGN_OPTIONS.qemuBinary)
      .option('--dest-qemu <path>', 'a different QEMU for every destination, a path or a release as --qemu: a same-host live upgrade (the machine type is pinned to what the guest runs)')
      .option('--guest-kernel <release-or-file>', `the lab guest's kernel: a Debian release's cloud kernel (${NAMED_GUEST_KERNELS.join(', ')}) or a linux-image .deb or bzImage (default: bookworm's)`);

  const labOptionsFrom = (o: CampaignCliOptions, failOnUnexpected: boolean): CampaignOptions => {
    let faultMatrix: FaultName[][];
    try {
      faultMatrix = parseFaultMatrix(o.faults);
    } catch (error) {
      throw new UserError(`--faults: ${(error as Error).message}`, EXIT.usage);
    }
    if (o.blackoutInterval > 10) throw new UserError('--blackout-interval: choose 1 to 10 ms, or 0 to turn the meter off', EXIT.usage);
    return {
      ...DEFAULT_CAMPAIGN_OPTIONS,
      faultMatrix,
      migrationsPerFault: o.migrations,
      controls: o.controls,
      expect: o.expect,
      failOnUnexpected,
      migrate: { downtimeLimitMs: o.downtimeLimit, maxBandwidthBytesPerSecond: o.bandwidth, postcopy: o.postcopy },
      longPauseMs: o.longPause,
      destQemuBinary: o.destQemu,
      blackoutIntervalMs: o.blackoutInterval,
      outDir: path.resolve(o.out),
      qemuBinary: o.qemu,
      memoryMiB: o.memory,
      cacheDir: path.resolve(o.cache),
      settleMs: o.settle,
      guestProbes: o.guestProbes ?? null,
      guestTimeDaemon: o.guestTimeDaemon ?? null,
      guestKernel: o.guestKernel ? (isNamedGuestKernel(o.guestKernel) ? o.guestKernel : path.resolve(o.guestKernel)) : null,
      machine: o.machine ?? null,
      sharedMemory: o.sharedMemory ?? false,
      agentless: o.agentless ?? false,
      outsideView: o.outsideView ?? false,
    };
  };

  addCampaignOptions(
    program
      .command('lab')
      .description(
        'boot a Linux guest under QEMU (TCG), live-migrate it over QMP once per fault (and once plain), and report what it noticed; ' +
          'with --hypervisor xen, a real Xen nested in QEMU: its domU (real netfront) through xl save/restore and xl migrate',
      )
      .option('--hypervisor <name>', 'qemu (two QEMU processes, QMP) or xen (Xen 4.17 with a PV dom0, nested under QEMU TCG, driven by xl; --xen-dest adds a second host)', 'qemu')
      .option('--guest <type>', 'xen: the domU type, pv or pvh', 'pv')
      .option('--domu-kernel <release-or-file>', `xen: the domU's kernel, a Debian release's cloud kernel (${NAMED_GUEST_KERNELS.join(', ')}) or a linux-image .deb or bzImage (default: bookworm's)`)
      .option('--xl-methods <list>', `xen: how each fault row moves the domU, in turn (${XL_METHODS.join(', ')})`, XL_METHODS.join(','))
      .option('--xen-dest <release>', `xen: a second nested Xen host of this release (${Object.keys(XEN_RELEASES).join(', ')}) on the lab bridge; xl migrate goes to it over ssh and back`),
    { faults: ['none', ...FAULTS].join(','), expect: 'disrupted' },
  ).action(
    guarded(PROGRAM, verbose, async (o: CampaignCliOptions & { hypervisor: string; guest: string; domuKernel?: string; xlMethods: string; xenDest?: string }, command: Command) => {
      if (o.hypervisor === 'qemu') {
        for (const xenOnly of ['guest', 'domuKernel', 'xlMethods', 'xenDest']) {
          if (command.getOptionValueSource(xenOnly) === 'cli') throw new UserError(`${flagOf(xenOnly)} is for --hypervisor xen`, EXIT.usage);
        }
        const options = labOptionsFrom(o, false);
        return showCampaign(await runQemuLab(options, log), options);
      }
      if (o.hypervisor !== 'xen') throw new UserError(`--hypervisor ${o.hypervisor}: choose qemu or xen`, EXIT.usage);
      if (o.guestTimeDaemon) throw new UserError('--guest-time-daemon is for the QEMU lab (--hypervisor qemu)', EXIT.usage);
      if (o.guestKernel) throw new UserError("--guest-kernel is the QEMU lab's; the Xen lab's guest is its domU: --domu-kernel", EXIT.usage);
      if (o.machine) throw new UserError('--machine is a QEMU machine type; the Xen lab builds its own host', EXIT.usage);
      if (o.sharedMemory) throw new UserError('--shared-memory is for the QEMU lab (two QEMUs on one host)', EXIT.usage);
      if (o.agentless || o.outsideView) throw new UserError(`--${o.agentless ? 'agentless' : 'outside-view'} is for the QEMU lab (--hypervisor qemu): the Xen lab has no outside view yet`, EXIT.usage);
      if (o.guest !== 'pv' && o.guest !== 'pvh') throw new UserError(`--guest ${o.guest}: choose pv or pvh`, EXIT.usage);
      if (o.xenDest !== undefined && !isXenRelease(o.xenDest)) throw new UserError(`--xen-dest ${printable(o.xenDest)}: choose ${Object.keys(XEN_RELEASES).join(' or ')}`, EXIT.usage);
      const methods = xlMethodsFrom(o.xlMethods);
      const base = labOptionsFrom(o, false);
      for (const qemuOnly of ['destQemu', 'downtimeLimit', 'bandwidth', 'postcopy']) {
        if (command.getOptionValueSource(qemuOnly) === 'cli') throw new UserError(`${flagOf(qemuOnly)} is a QEMU migration option; xl has none`, EXIT.usage);
      }
      const options: XenLabOptions = {
        ...DEFAULT_XEN_LAB_OPTIONS,
        ...base,
        faultMatrix: command.getOptionValueSource('faults') === 'cli' ? base.faultMatrix : DEFAULT_XEN_LAB_OPTIONS.faultMatrix,
        methods,
        bootTimeoutMs: DEFAULT_XEN_LAB_OPTIONS.bootTimeoutMs,
        migrationTimeoutMs: DEFAULT_XEN_LAB_OPTIONS.migrationTimeoutMs,
        guestType: o.guest,
        domuKernel: o.domuKernel ? (isNamedGuestKernel(o.domuKernel) ? o.domuKernel : path.resolve(o.domuKernel)) : null,
        destXen: o.xenDest !== undefined && isXenRelease(o.xenDest) ? o.xenDest : null,
      };
      showCampaign(await runXenLab(options, log), options);
    }),
  );

  addCampaignOptions(
    program
      .command('campaign')
      .description('run a fault matrix of migrations with one driver, resumable, failing (exit 5, JUnit failures) where a verdict is worse than --expect')
      .option('--driver <name>', `how to migrate: ${Object.entries(CAMPAIGN_DRIVERS).map(([name, d]) => `${name} (${d.summary})`).join('; ')}`, 'qmp')
      .option('--libvirt-uri <uri>', 'the libvirtd the libvirt driver uses', 'qemu:///system')
      .option('--libvirt-dest <uri>', 'live-migrate (virsh migrate --live) to this libvirtd and back, instead of save/restore')
      .option('--libvirt-migrate-uri <uri>', 'where destination QEMUs listen, e.g. tcp://127.0.0.1:49300 (two libvirtds on one host)')
      .option('--libvirt-migrate-flags <list>', `more virsh migrate flags for a domain with disks: ${LIBVIRT_MIGRATE_FLAGS.join(', ')} (unsafe: storage both hosts share that libvirt does not know as shared)`)
      .option('--domain <name>', 'your own running libvirt domain, with the agent in it (its key from flinch token): migrated, never started, destroyed or redefined')
      .option('--agent-id <id>', "with --domain: the agent to wait for (default: the one whose hello lists one of the domain's MACs)")
      .option('--fleet-secret <file>', "with --domain: the secret (0600) the guest agent's key was derived from")
      .option('--collector-listen <host:port>', "with --domain: where the campaign's collector listens, as the guest's agent was told")
      .option('--agent-timeout <s>', "with --domain: how long to wait for the guest agent's hello, seconds", positiveInt, 120)
      .option('--leave-on <uri>', 'with --domain and --libvirt-dest: the libvirtd to leave the domain on (default: --libvirt-uri, where it was found)')
      .option('--guest-address <ip>', "with --domain: the guest's address, reachable from here (a bridged guest): ICMP timestamps to it measure its blackout and clock lag from outside; with --agentless, its verdicts too")
      .option('--xl-host <url>', 'with --driver xl --domain: the Xen host the domain runs on, local or ssh://[user@]host[:port] (your own ssh keys and ~/.ssh/config)')
      .option('--xl-dest <url>', 'with --driver xl: a second Xen host, ssh://[user@]host, to xl migrate to and back (its dom0 reached by the first one\'s ssh)')
      .option('--ssh-config <file>', "with --xl-host ssh://: ssh's configuration file (ssh -F; ssh otherwise reads ~/.ssh/config of the user flinch runs as, not $HOME's)")
      .option('--xl-methods <list>', `with --driver xl: how each fault row moves the domain, in turn (${XL_METHODS.join(', ')}; migrate: to --xl-dest, or to the same host)`),
    { faults: 'none', expect: 'noticed' },
  ).action(
    guarded(PROGRAM, verbose, async (o: CampaignCliOptions & {
      driver: string; libvirtUri: string; libvirtDest?: string; libvirtMigrateUri?: string; libvirtMigrateFlags?: string; domain?: string; guestAddress?: string; xlHost?: string; xlDest?: string; sshConfig?: string; xlMethods?: string; agentId?: string; fleetSecret?: string; collectorListen?: string; leaveOn?: string; agentTimeout: number;
    }, command: Command) => {
      if (o.guestTimeDaemon && o.driver !== 'qmp') throw new UserError(`--guest-time-daemon is for the qmp driver's guest, not ${o.driver}'s`, EXIT.usage);
      if (o.outsideView && o.driver !== 'qmp') throw new UserError(`--outside-view is for the qmp driver's guest, not ${o.driver}'s (your own domain: --guest-address)`, EXIT.usage);
      if (o.agentless && o.driver !== 'qmp' && o.domain === undefined) throw new UserError(`--agentless is for the qmp driver's guest or your own domain (--domain), not ${o.driver}'s lab guest`, EXIT.usage);
      for (const qmpOnly of ['machine', 'destQemu', 'sharedMemory'] as const) {
        if (o[qmpOnly] !== undefined && o.driver !== 'qmp') throw new UserError(`${flagOf(qmpOnly)} is for the qmp driver, not ${o.driver}`, EXIT.usage);
      }
      if (o.guestKernel !== undefined && (o.driver === 'sim' || o.domain !== undefined)) {
        throw new UserError(`--guest-kernel is for a guest the lab builds (qmp, libvirt without --domain), not ${o.domain !== undefined ? 'your own domain' : 'the sim driver\'s namespace'}`, EXIT.usage);
      }
      const driver = Object.hasOwn(CAMPAIGN_DRIVERS, o.driver) ? CAMPAIGN_DRIVERS[o.driver]! : null;
      if (!driver) {
        throw new UserError(`--driver ${o.driver}: campaigns run with ${Object.keys(CAMPAIGN_DRIVERS).join(', ')}; the nested Xen lab: flinch lab --hypervisor xen`, EXIT.usage);
      }
      const xl = xenHostsFrom(o);
      const existing = existingGuestFrom(o);
      if (o.xlMethods !== undefined && o.driver !== 'xl') throw new UserError('--xl-methods is for --driver xl', EXIT.usage);
      const methods = o.driver === 'xl' ? xlMethodsFrom(o.xlMethods ?? XL_METHODS.join(',')) : undefined;
      const migrateFlags = libvirtMigrateFlagsFrom(o.libvirtMigrateFlags, o.driver, o.libvirtDest);
      if (!existing && command.getOptionValueSource('agentTimeout') === 'cli') throw new UserError('--agent-timeout is for your own guest: give it with --domain NAME', EXIT.usage);
      const options = { ...labOptionsFrom(o, true), ...(existing ? { bootTimeoutMs: o.agentTimeout * 1000 } : {}), ...(methods ? { methods } : {}) };
      showCampaign(await driver.run(options, { libvirtUri: o.libvirtUri, libvirtDest: o.libvirtDest ?? null, libvirtMigrateUri: o.libvirtMigrateUri ?? null, libvirtMigrateFlags: migrateFlags, xl, existing }, log), options);
    }),
  );

  program
    .command('qemu-upgrade')
    .description("move a running QEMU's guest to another QEMU binary on this host by a live migration, and leave the new process running it")
    .requiredOption('--qmp <socket>', "the running QEMU's QMP socket (-qmp unix:PATH,server=on)")
    .requiredOption('--to <binary>', 'the QEMU system emulator to move the guest to')
    .option('--dry-run', 'print what would move and the new command line; change nothing')
    .option('--out <dir>', 'upgrade.json, the new QEMU\'s start-up log (and its pid file, if the old one had none); with an agent, the campaign outputs', 'flinch-upgrade')
    .option('--timeout <s>', 'how long the migration may take', positiveInt, 300)
    .option('--agent-id <id>', "the guest's agent to wait for (default: the one whose hello lists the NIC's MAC)")
    .option('--fleet-secret <file>', "measure with the guest's agent: the secret (0600) its key was derived from")
    .option('--collector-listen <host:port>', "with --fleet-secret: where the collector listens, as the guest's agent was told")
    .option('--agent-timeout <s>', "how long to wait for the guest agent's hello, seconds", positiveInt, 120)
    .option('--expect <verdict>', 'with an agent or --guest-address: a verdict worse than this fails (exit 5)', parseExpectation, 'noticed')
    .option('--guest-address <ip>', "the guest's address, reachable from here: ICMP timestamps to it measure its blackout and clock lag from outside (the verdict too, without an agent)")
    .option('--settle <ms>', 'with an agent or --guest-address: how long to keep listening after the migration', positiveInt, DEFAULT_CAMPAIGN_OPTIONS.settleMs)
    .action(
      guarded(PROGRAM, verbose, async (o: {
        qmp: string; to: string; dryRun?: boolean; out: string; timeout: number; agentId?: string; fleetSecret?: string; collectorListen?: string; agentTimeout: number; settle: number;
        guestAddress?: string; expect: ExpectedVerdict;
      }, command: Command) => {
        const withAgent = upgradeAgentFrom(o, command);
        if (o.guestAddress !== undefined && net.isIP(o.guestAddress) === 0) throw new UserError(`--guest-address ${o.guestAddress}: an IPv4 or IPv6 address`, EXIT.usage);
        const measured = withAgent !== null || o.guestAddress !== undefined;
        for (const campaignOnly of ['settle', 'expect']) {
          if (!measured && command.getOptionValueSource(campaignOnly) === 'cli') throw new UserError(`${flagOf(campaignOnly)} is for a measured upgrade: give --fleet-secret or --guest-address too`, EXIT.usage);
        }
        const outDir = path.resolve(o.out);
        const driver = new QemuUpgradeDriver({ qmpSocket: o.qmp, newBinary: o.to, workDir: outDir, timeoutMs: o.timeout * 1000 });
        try {
          await driver.prepare();
          if (o.dryRun) {
            process.stdout.write(describePlan(driver));
            return;
          }
          if (measured) {
            const options = {
              ...DEFAULT_CAMPAIGN_OPTIONS, outDir, settleMs: o.settle, bootTimeoutMs: o.agentTimeout * 1000, migrationTimeoutMs: o.timeout * 1000, failOnUnexpected: true, expect: o.expect,
              agent: withAgent, guestAddress: o.guestAddress ?? null,
            };
            showCampaign(await runUpgradeCampaign(options, driver, log), options);
            if (!driver.outcome) throw new UserError(`the upgrade failed; see ${path.join(outDir, 'results.json')}`, EXIT.failed);
          } else {
            await driver.migrate();
          }
          process.stdout.write(describeUpgrade(driver.outcome!));
        } finally {
          await driver.cleanup();
        }
      }),
    );

  program
    .command('report')
    .description('regenerate an output from the results.json in DIR')
    .argument('<dir>', 'a folder written by flinch lab or flinch campaign')
    .option('--format <format>', `one of ${OUTPUT_FORMATS.join(', ')}`, 'table')
    .option('--output <file>', 'write here instead of standard output')
    .action(
      guarded(PROGRAM, verbose, async (dir: string, o: { format: string; output?: string }) => {
        if (!(OUTPUT_FORMATS as readonly string[]).includes(o.format)) throw new UserError(`--format ${o.format}: choose one of ${OUTPUT_FORMATS.join(', ')}`, EXIT.usage);
        let results;
        try {
          results = readLabResults(dir);
        } catch (error) {
          throw new UserError((error as Error).message, EXIT.usage);
        }
        const text = render(results, o.format as OutputFormat);
        if (o.output) writeFileSync(o.output, text);
        else process.stdout.write(text);
      }),
    );

  addCampaignOptions(
    program
      .command('matrix')
      .description('the QEMU lab over every QEMU pair and guest kernel given: one campaign per cell, each in its own folder under --out and resumable, then every cell compared with the first')
      .requiredOption('--qemu <list>', 'comma-separated QEMUs, each SRC or SRC:DEST, a path or a Debian release (bookworm, bookworm-backports), e.g. bookworm,bookworm:bookworm-backports')
      .option('--guest-kernel <list>', `comma-separated guest kernels, each a release (${NAMED_GUEST_KERNELS.join(', ')}) or a kernel file (default: bookworm's)`)
      .option('--alpha <p>', 'significance level of the comparison', probability, DEFAULT_COMPARE_SETTINGS.alpha)
      .option('--min-change <percent>', "how far a median must move (percent of the first cell's) to count", nonNegativeNumber, DEFAULT_COMPARE_SETTINGS.minChangePercent),
    { faults: ['none', 'nic-replug', 'guest-firewall-flush'].join(','), expect: 'disrupted' },
    'matrix',
  ).action(
    guarded(PROGRAM, verbose, async (o: CampaignCliOptions & { alpha: number; minChange: number }) => {
      const list = (value: string | undefined) => (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
      const kernels = list(o.guestKernel).map((k) => (isNamedGuestKernel(k) ? k : path.resolve(k)));
      const cells = planMatrix(list(o.qemu), kernels);
      const base = labOptionsFrom({ ...o, qemu: DEFAULT_CAMPAIGN_OPTIONS.qemuBinary, destQemu: undefined, guestKernel: undefined }, true);
      const outcome = await runMatrix(base, cells, { alpha: o.alpha, minChangePercent: o.minChange }, (options) => runQemuLab(options, log), log);
      const failed = outcome.cells.filter((c) => c.error);
      for (const cell of failed) log(`cell ${cell.name}: ${cell.error}`);
      if (outcome.comparison) process.stdout.write(renderComparison(outcome.comparison, 'table'));
      process.stdout.write(`\n${outcome.written.join('\n')}\n`);
      if (failed.length > 0) process.exitCode = EXIT.failed;
      else if (outcome.cells.some((c) => (c.worseThanExpected ?? 0) > 0)) process.exitCode = EXIT.worseThanExpected;
    }),
  );

  program
    .command('compare')
    .description('campaigns side by side: per kind of migration, each folder after the first against the first, same, better or worse')
    .argument('<baseline>', 'a folder written by flinch lab, campaign or matrix: what the others are compared with')
    .argument('<candidates...>', 'one or more folders to compare with the baseline')
    .option('--format <format>', `one of ${COMPARE_FORMATS.join(', ')}`, 'table')
    .option('--output <file>', 'write here instead of standard output')
    .option('--alpha <p>', 'significance level of the test', probability, DEFAULT_COMPARE_SETTINGS.alpha)
    .option('--min-change <percent>', "how far a median must move (percent of the baseline's) to count", nonNegativeNumber, DEFAULT_COMPARE_SETTINGS.minChangePercent)
    .addHelpText('after', `\nExit status: ${EXIT.ok} when no row got worse, ${EXIT.worseThanExpected} when one did (the JUnit output fails it), ${EXIT.usage} for a folder without results.`)
    .action(
      guarded(PROGRAM, verbose, async (baseline: string, candidates: string[], o: { format: string; output?: string; alpha: number; minChange: number }) => {
        if (!(COMPARE_FORMATS as readonly string[]).includes(o.format)) throw new UserError(`--format ${o.format}: choose one of ${COMPARE_FORMATS.join(', ')}`, EXIT.usage);
        const campaigns = [baseline, ...candidates].map((dir) => {
          try {
            return { dir, results: readLabResults(dir) };
          } catch (error) {
            throw new UserError((error as Error).message, EXIT.usage);
          }
        });
        const comparison = compareCampaigns(campaigns, { alpha: o.alpha, minChangePercent: o.minChange });
        const text = renderComparison(comparison, o.format as CompareFormat);
        if (o.output) writeFileSync(o.output, text);
        else process.stdout.write(text);
        if (anyWorse(comparison)) process.exitCode = EXIT.worseThanExpected;
      }),
    );

  innerCommand(QEMU_LAB_INSIDE, 'the part of flinch lab that runs inside the lab network namespace', async () => {
    const { outcome, options } = await runLabInside(log);
    showCampaign(outcome, options);
  });
  innerCommand(XEN_LAB_INSIDE, 'the part of flinch lab --hypervisor xen that runs inside the lab network namespace', async () => {
    const { outcome, options } = await runXenLabInside(log);
    showCampaign(outcome, options);
  });
  program
    .command('package-check')
    .description('install the .deb into a fresh Debian guest with systemd (11, 12 or 13; QEMU, TCG) and check the service: start, kill -9, bad config, hardening')
    .option('--deb <file>', 'the package', path.join(projectRoot(), 'build', 'deb', `flinch-agent_${FLINCH_VERSION}_amd64.deb`))
    .option('--host-deb <file>', 'also install the harness package (flinch) beside it and check it in the guest: its runtime, native modules, man page, removal')
    .option('--out <dir>', `where ${'package-check.json'} and the logs go`, 'flinch-package-check')
    .option('--qemu <path>', 'QEMU system emulator: a path, or a Debian release whose QEMU is fetched into the cache (bookworm-backports: 10.0)', DEFAULT_CAMPAIGN_OPTIONS.qemuBinary)
    .addOption(new Option('--suite <release>', "the guest's Debian release, with its own cloud kernel").choices([...PACKAGE_CHECK_SUITES]).default('bookworm'))
    .option('--cache <dir>', 'where the guest kernel and the Debian tree are cached', DEFAULT_CAMPAIGN_OPTIONS.cacheDir)
    .action(
      guarded(PROGRAM, verbose, async (o: { deb: string; hostDeb?: string; out: string; qemu: string; cache: string; suite: PackageCheckSuite }) => {
        const cacheDir = path.resolve(o.cache);
        const results = await runPackageCheck(
          {
            deb: path.resolve(o.deb),
            hostDeb: o.hostDeb ? path.resolve(o.hostDeb) : null,
            outDir: path.resolve(o.out),
            cacheDir,
            suite: o.suite,
            qemuBinary: await qemuFrom(cacheDir, o.qemu, log),
            memoryMiB: 512,
            bootTimeoutMs: 180_000,
            collectorPort: DEFAULT_CAMPAIGN_OPTIONS.collectorPort,
          },
          log,
        );
        const failed = results.checks.filter((c) => !c.ok).length;
        process.stdout.write(`${results.checks.length - failed}/${results.checks.length} package checks passed; security exposure ${results.securityExposure ?? 'unknown'}\n`);
        if (failed > 0) process.exitCode = EXIT.worseThanExpected;
      }),
    );

  program
    .command('collect')
    .description('run a fleet collector: authenticate agents, store each report once (SQLite, WAL), acknowledge, serve metrics')
    .requiredOption('--listen <host:port>', 'where agents connect, e.g. 0.0.0.0:7431')
    .requiredOption('--store <file|url>', 'SQLite database (created if missing), or postgres://USER@HOST/DB: one store shared by several collectors, so that agents can move between them (schema created if missing)')
    .option('--fleet-secret <file>', 'secret (0600) from which every agent key is derived; give agents theirs with `flinch token`')
    .option('--agent-keys <file>', 'explicit keys (0600), one "agent-id key" a line; only those agents may connect')
    .option('--no-auth', 'accept unsigned agents (a private lab network only)')
    .option('--tls-cert <file>', 'PEM certificate: serve wss:// (agents trust it with --ca-file)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--metrics <host:port>', 'serve Prometheus metrics (GET /metrics) here')
    .option('--time-probe-interval <ms>', 'how often each agent is sent a clock probe', positiveInt, 10_000)
    .option('--retain-days <n>', 'delete reports received longer ago than this (0: keep them all)', nonNegativeInt, DEFAULT_RETENTION.maxAgeMs! / 86_400_000)
    .option('--max-store-bytes <n>', 'keep the stored reports under this many bytes, deleting the oldest (0: no bound)', nonNegativeInt, DEFAULT_RETENTION.maxBytes!)
    .option('--agent-quota-bytes <n>', "keep each agent's reports under this many bytes, deleting its oldest (0: no bound)", nonNegativeInt, DEFAULT_RETENTION.perAgentBytes!)
    .option('--max-pending-per-address <n>', 'connections from one address that may wait for their hello at once', positiveInt, DEFAULT_MAX_PENDING_PER_ADDRESS)
    .option('--max-connections <n>', 'TCP connections held at most, authenticated or not', positiveInt, DEFAULT_MAX_CONNECTIONS)
    .option('--liveness-interval <ms>', 'how often the store learns when each connected agent was last heard from (pongs included): what tells a rollout a quiet agent from a silent one', positiveInt, DEFAULT_LIVENESS_INTERVAL_MS)
    .action(
      guarded(PROGRAM, verbose, async (o: {
        listen: string; store: string; fleetSecret?: string; agentKeys?: string; auth: boolean; tlsCert?: string; tlsKey?: string; metrics?: string;
        timeProbeInterval: number; retainDays: number; maxStoreBytes: number; agentQuotaBytes: number; maxPendingPerAddress: number; maxConnections: number; livenessInterval: number;
      }) => {
        const { stop } = await runCollector(
          {
            listen: o.listen, store: o.store, fleetSecret: o.fleetSecret, agentKeys: o.agentKeys, noAuth: !o.auth, tlsCert: o.tlsCert, tlsKey: o.tlsKey,
            metrics: o.metrics, timeProbeIntervalMs: o.timeProbeInterval,
            retention: {
              maxAgeMs: o.retainDays === 0 ? null : o.retainDays * 86_400_000,
              maxBytes: o.maxStoreBytes === 0 ? null : o.maxStoreBytes,
              perAgentBytes: o.agentQuotaBytes === 0 ? null : o.agentQuotaBytes,
            },
            maxPendingPerAddress: o.maxPendingPerAddress, maxConnections: o.maxConnections, livenessIntervalMs: o.livenessInterval,
          },
          log,
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await stop();
        log('stopped');
      }),
    );

  program
    .command('enroll')
    .description("everything one guest needs to report to your collector: its key, an agent.yaml, and a cloud-init NoCloud seed that installs the agent")
    .requiredOption('--agent-id <id>', 'the agent id the guest will run with')
    .requiredOption('--fleet-secret <file>', 'the fleet secret (0600) the collectors use')
    .option('--collector <url>', 'where the guest reaches a collector (ws:// or wss://); repeat it to shard', (url: string, previous: string[] = []) => [...previous, url])
    .option('--collector-failover', 'the collectors share one PostgreSQL store: the agent moves between them when one is gone')
    .option('--remediate <mode>', 'the safety net in the guest: off, dry-run or on', 'dry-run')
    .option('--out <dir>', 'write token (0600), agent.yaml, user-data and meta-data here, instead of printing the user-data')
    .option('--seed-image <file>', 'also write a NoCloud seed image (ISO 9660, label cidata) to boot a cloud image with')
    .option('--deb <file>', 'put this flinch-agent .deb on the seed: the first boot installs it and starts the agent')
    .action(
      guarded(PROGRAM, verbose, async (o: { agentId: string; fleetSecret: string; collector?: string[]; collectorFailover?: boolean; remediate: string; out?: string; seedImage?: string; deb?: string }) => {
        if (o.remediate !== 'off' && o.remediate !== 'dry-run' && o.remediate !== 'on') throw new UserError(`--remediate ${o.remediate}: choose off, dry-run or on`, EXIT.usage);
        if (o.deb !== undefined && o.seedImage === undefined) throw new UserError('--deb goes on the seed: give --seed-image FILE too', EXIT.usage);
        if (o.deb !== undefined && !existsSync(o.deb)) throw new UserError(`--deb ${o.deb}: no such file (npm run build makes build/deb/flinch-agent_*.deb)`, EXIT.usage);
        const enrolled = enrollment({ agentId: o.agentId, fleetSecretFile: o.fleetSecret, collectors: o.collector ?? [], collectorFailover: o.collectorFailover, remediate: o.remediate });
        // The user-data written beside a seed is the seed's own: with its package, the install step too.
        if (o.out !== undefined) for (const file of writeEnrollment(o.out, enrolled, o.deb !== undefined)) log(`wrote ${file}`);
        if (o.seedImage !== undefined) {
          await writeSeedImage(o.seedImage, enrolled, o.deb ?? null);
          log(`wrote ${o.seedImage}: attach it to the guest as a CD-ROM or disk; cloud-init's NoCloud reads it at first boot`);
        }
        if (o.out === undefined && o.seedImage === undefined) process.stdout.write(enrolled.userData(false));
      }),
    );

  program
    .command('token')
    .description("print an agent's signing key, derived from the fleet secret: put it in the guest's token file (0600)")
    .requiredOption('--fleet-secret <file>', 'the fleet secret the collectors use')
    .requiredOption('--agent-id <id>', 'the agent id the guest runs with')
    .action(
      guarded(PROGRAM, verbose, async (o: { fleetSecret: string; agentId: string }) => {
        agentIdArgument(o.agentId);
        let secret: string;
        try {
          secret = readSecretFile(o.fleetSecret, 'fleet secret');
        } catch (error) {
          throw new UserError((error as Error).message, EXIT.usage);
        }
        process.stdout.write(`${agentKeyFor(secret, o.agentId)}\n`);
      }),
    );

  program
    .command('rollout')
    .description('migrate many guests in waves, read each verdict from the collectors\' store, and halt when too many are disrupted')
    .option('--driver <name>', 'libvirt (live migration of running domains), xl (xl migrate of running Xen domains) or sim (a simulated fleet of network namespaces, for trying it)', 'libvirt')
    .requiredOption('--out <dir>', 'journal (resumable: run again with the same guests and settings) and rollout.json')
    .option('--parallel <k>', 'guests migrated at once, a wave', positiveInt, 1)
    .option('--halt-at <share>', 'halt when the share of disrupted, silent or failed guests among the last --window passes this (above 0, at most 1: 1 never halts)', shareLimit, 0.005)
    .option('--window <n>', 'how many of the latest guests the share is taken over', positiveInt, 200)
    .option('--verdict-timeout <s>', "after a migration, how long to wait for the guest agent's report", positiveInt, 60)
    .option('--verdict-grace <s>', 'after the first report, how much longer to gather the episodes of that migration (the worst counts)', nonNegativeInt, 10)
    .option('--store <file|url>', "libvirt, xl: the collectors' store (SQLite file or postgres://…) the guests' agents report to")
    .option('--libvirt-uri <uri>', 'libvirt: where the guests run', 'qemu:///system')
    .option('--destination <uri>', 'libvirt: where they go (virsh migrate --live)')
    .option('--migrate-uri <uri>', "libvirt: where the destination's QEMU listens for the migration stream (virsh migrate --migrateuri), when libvirt's default, the destination's hostname, does not reach it")
    .option('--domain <name[=agent-id]>', 'libvirt, xl: a domain to roll out, and its agent id when not its name; repeat it (default: every running domain)', (v: string, previous: string[] = []) => [...previous, v], [])
    .option('--guest-list <file>', 'libvirt, xl: the domains to roll out, in order, one DOMAIN or DOMAIN=AGENT-ID a line (# comments)')
    .option('--xl-host <url>', 'xl: the Xen host the domains run on, local or ssh://[user@]host[:port]', 'local')
    .option('--xl-dest <url>', 'xl: the Xen host they go to (xl migrate, from the first host\'s dom0); the same as --xl-host: a migration on that host')
    .option('--ssh-config <file>', 'xl: ssh\'s configuration file for --xl-host (ssh -F)')
    .option('--migrate-timeout <s>', 'libvirt, xl: how long one migration may take', positiveInt, 300)
    .option('--guests <n>', 'sim: how many simulated guests', positiveInt, 50)
    .option('--sim-downtime <ms>', 'sim: how long each migration freezes a guest (a freeze longer than the agent\'s 500 ms clock tick is always seen)', positiveInt, 1000)
    .option('--sim-fault <guest:fault>', 'sim: this guest also suffers this fault after its migration (e.g. sim-7:guest-firewall-flush); repeat it', (v: string, previous: string[] = []) => [...previous, v], [])
    .action(
      guarded(PROGRAM, verbose, async (o: {
        driver: string; out: string; parallel: number; haltAt: number; window: number; verdictTimeout: number; verdictGrace: number; store?: string; libvirtUri: string; destination?: string; migrateUri?: string;
        domain: string[]; guestList?: string; xlHost: string; xlDest?: string; sshConfig?: string; migrateTimeout: number; guests: number; simDowntime: number; simFault: string[];
      }, command: Command) => {
        if (o.driver !== 'libvirt' && o.driver !== 'xl' && o.driver !== 'sim') throw new UserError(`--driver ${o.driver}: choose libvirt, xl or sim`, EXIT.usage);
        // A flag of another driver is a mistake worth one line, not an option silently ignored.
        const driversOf: Record<string, readonly string[]> = {
          libvirtUri: ['libvirt'], destination: ['libvirt'], migrateUri: ['libvirt'], xlHost: ['xl'], xlDest: ['xl'], sshConfig: ['xl'],
          store: ['libvirt', 'xl'], domain: ['libvirt', 'xl'], guestList: ['libvirt', 'xl'], migrateTimeout: ['libvirt', 'xl'], guests: ['sim'], simDowntime: ['sim'], simFault: ['sim'],
        };
        for (const [option, drivers] of Object.entries(driversOf)) {
          if (command.getOptionValueSource(option) === 'cli' && !drivers.includes(o.driver)) throw new UserError(`${flagOf(option)} is for --driver ${drivers.join(' or ')}`, EXIT.usage);
        }
        const outcome = await rolloutCommand({
          driver: o.driver, out: o.out, parallel: o.parallel, haltAt: o.haltAt, window: o.window, verdictTimeoutMs: o.verdictTimeout * 1000, verdictGraceMs: o.verdictGrace * 1000, store: o.store,
          libvirtUri: o.libvirtUri, destination: o.destination, migrateUri: o.migrateUri, domain: o.domain, guestList: o.guestList, xlHost: o.xlHost, xlDest: o.xlDest, sshConfig: o.sshConfig,
          migrateTimeoutMs: o.migrateTimeout * 1000,
          simGuests: o.guests, simDowntimeMs: o.simDowntime, simFault: o.simFault,
        }, log);
        process.stdout.write(`${renderRollout(outcome)}\n`);
        if (outcome.halted) process.exitCode = EXIT.worseThanExpected;
      }),
    );

  program
    .command('fleet')
    .description('what the fleet reported')
    .command('status')
    .description('agents by last verdict, agents silent too long, and per-guest verdict rates, from a collector store')
    .requiredOption('--store <file|url>', "the collector's SQLite database, or the postgres:// URL of the collectors' shared store")
    .option('--silent-after <s>', 'an agent not heard from for this long is silent', positiveInt, 300)
    .option('--top <n>', 'rows per list', positiveInt, 20)
    .option('--json', 'the whole status as JSON')
    .action(
      guarded(PROGRAM, verbose, async (o: { store: string; silentAfter: number; top: number; json?: boolean }) => {
        if (!isPostgresUrl(o.store) && !existsSync(o.store)) throw new UserError(`${o.store}: no such store`, EXIT.usage);
        let store: FleetStore;
        try {
          store = await openStore(o.store);
        } catch (error) {
          throw new UserError(`${isPostgresUrl(o.store) ? '' : `${o.store}: `}${(error as Error).message}`, EXIT.usage);
        }
        try {
          const status = await fleetStatus(store, Date.now(), o.silentAfter * 1000);
          process.stdout.write(o.json ? `${JSON.stringify(status, null, 2)}\n` : `${renderFleetStatus(status, o.top)}\n`);
        } finally {
          await store.close();
        }
      }),
    );

  innerCommand(SIM_CAMPAIGN_INSIDE, 'the part of flinch campaign --driver sim that runs inside the simulated host namespace', async () => {
    const { outcome, options } = await runSimCampaignInside(log);
    showCampaign(outcome, options);
  });

  innerCommand(PACKAGE_CHECK_INSIDE, 'the part of flinch package-check that runs inside the lab network namespace', () => runPackageCheckInside(readPackageCheckPlan(), log));
  return program;
}

/** The agent settings of `flinch qemu-upgrade`, or null to measure from QEMU alone; a usage error for what does not fit. */
function upgradeAgentFrom(o: { fleetSecret?: string; collectorListen?: string; agentId?: string }, command: Command) {
  if (o.fleetSecret === undefined) {
    const stray = (['collectorListen', 'agentId', 'agentTimeout'] as const).find((k) => command.getOptionValueSource(k) === 'cli');
    if (stray) throw new UserError(`${flagOf(stray)} is for measuring with the guest's agent: give --fleet-secret FILE too`, EXIT.usage);
    return null;
  }
  if (o.collectorListen === undefined) throw new UserError("--fleet-secret needs --collector-listen HOST:PORT: where the guest's agent was told the collector is", EXIT.usage);
  if (o.agentId !== undefined) agentIdArgument(o.agentId);
  const listen = guestCollectorListen(o.collectorListen);
  return { fleetSecret: fleetSecretArgument(o.fleetSecret), collectorHost: listen.host, collectorPort: listen.port, agentId: o.agentId ?? null };
}
