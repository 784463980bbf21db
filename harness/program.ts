import path from 'node:path';
import type { Command } from 'commander';
import { createProgram, guarded, positiveInt } from '../agent/cli-support.js';
import { DEFAULT_LAB_OPTIONS, readInnerPlan, runLabInside, runQemuLab } from './lab/qemu-lab.js';
import { readPackageCheckPlan, runPackageCheck, runPackageCheckInside } from './lab/package-lab.js';
import { projectRoot } from './project-paths.js';
import { FLINCH_VERSION } from '../agent/version.js';

const PROGRAM = 'flinch';

export function buildHarnessProgram(): Command {
  const { program, verbose, log } = createProgram(PROGRAM, 'flinch: did the guest notice its live migration, and did it lose anything?');

  program
    .command('lab')
    .description('boot a Linux guest under QEMU (TCG), live-migrate it back and forth over QMP, and report what it noticed')
    .option('--migrations <n>', 'how many migrations', positiveInt, DEFAULT_LAB_OPTIONS.migrations)
    .option('--out <dir>', 'where results.json and the logs go', 'flinch-lab-results')
    .option('--qemu <path>', 'QEMU system emulator', DEFAULT_LAB_OPTIONS.qemuBinary)
    .option('--memory <MiB>', 'guest memory (at least 384)', positiveInt, DEFAULT_LAB_OPTIONS.memoryMiB)
    .option('--cache <dir>', 'where the guest kernel and images are cached', DEFAULT_LAB_OPTIONS.cacheDir)
    .option('--settle <ms>', 'how long to keep listening after each migration', positiveInt, DEFAULT_LAB_OPTIONS.settleMs)
    .option('--guest-probes <list>', 'probes the guest agent runs (default: all)', (v: string) => v.split(',').map((p) => p.trim()).filter(Boolean))
    .action(
      guarded(PROGRAM, verbose, async (o: { migrations: number; out: string; qemu: string; memory: number; cache: string; settle: number; guestProbes?: string[] }) => {
        await runQemuLab(
          {
            ...DEFAULT_LAB_OPTIONS,
            migrations: o.migrations,
            outDir: path.resolve(o.out),
            qemuBinary: o.qemu,
            memoryMiB: o.memory,
            cacheDir: path.resolve(o.cache),
            settleMs: o.settle,
            guestProbes: o.guestProbes ?? null,
          },
          log,
        );
      }),
    );

  program
    .command('lab-inner', { hidden: true })
    .description('internal: the part of flinch lab that runs inside the lab network namespace')
    .action(
      guarded(PROGRAM, verbose, async () => {
        await runLabInside(readInnerPlan(), log);
      }),
    );
  program
    .command('package-check')
    .description('install the .deb into a fresh Debian 12 guest with systemd (QEMU, TCG) and check the service: start, kill -9, bad config, hardening')
    .option('--deb <file>', 'the package', path.join(projectRoot(), 'build', 'deb', `flinch-agent_${FLINCH_VERSION}_amd64.deb`))
    .option('--out <dir>', `where ${'package-check.json'} and the logs go`, 'flinch-package-check')
    .option('--qemu <path>', 'QEMU system emulator', DEFAULT_LAB_OPTIONS.qemuBinary)
    .option('--cache <dir>', 'where the guest kernel and the Debian tree are cached', DEFAULT_LAB_OPTIONS.cacheDir)
    .action(
      guarded(PROGRAM, verbose, async (o: { deb: string; out: string; qemu: string; cache: string }) => {
        const results = await runPackageCheck(
          {
            deb: path.resolve(o.deb),
            outDir: path.resolve(o.out),
            cacheDir: path.resolve(o.cache),
            qemuBinary: o.qemu,
            memoryMiB: 512,
            bootTimeoutMs: 180_000,
            collectorPort: DEFAULT_LAB_OPTIONS.collectorPort,
          },
          log,
        );
        const failed = results.checks.filter((c) => !c.ok).length;
        process.stdout.write(`${results.checks.length - failed}/${results.checks.length} package checks passed; security exposure ${results.securityExposure ?? 'unknown'}\n`);
        if (failed > 0) process.exitCode = 1;
      }),
    );

  program
    .command('package-check-inner', { hidden: true })
    .description('internal: the part of flinch package-check that runs inside the lab network namespace')
    .action(
      guarded(PROGRAM, verbose, async () => {
        await runPackageCheckInside(readPackageCheckPlan(), log);
      }),
    );
  return program;
}
