// `flinch campaign --driver sim`, the namespace SIMULATION: the real single-executable agent in a namespace "guest",
// frozen by a cgroup for each "migration", faults made with iproute2 and nft; everything it set up is gone after.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../../harness/report/lab-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { runCommand } from '../../system/run-command.js';
import { processArguments } from '../../system/unix-socket-owner.js';

t.test('a sim campaign over its faults, judged by the agent, with the blackout measured and nothing left behind', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-sim-campaign-'));
  // Its namespaces are flinch-sim-PID-…: watched while it runs, so that "none left" below is checked on the right names
  // (another test file may be running simulated guests of its own beside this one).
  let seenOwnNamespace = false;
  let watch: NodeJS.Timeout | undefined;
  const run = await runCli([FLINCH, 'campaign', '--driver', 'sim', '--faults', 'none,carrier-flap,nic-replug,long-pause,guest-firewall-flush', '--controls', '2', '--expect', 'disrupted', '--long-pause', '1000', '--out', out], {
    timeoutMs: 300_000,
    onSpawn: (pid) => {
      watch = setInterval(() => {
        runCommand('ip', ['netns', 'list']).then(({ stdout }) => (seenOwnNamespace ||= stdout.includes(`flinch-sim-${pid}-guest`)), () => undefined);
      }, 1000);
    },
  });
  clearInterval(watch);
  t.equal(run.code, 0, run.stderr.split('\n').slice(-4).join('\n'));
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.equal(results.hypervisor.driver, 'sim');
  const controls = results.migrations.filter((m) => m.control);
  const real = results.migrations.filter((m) => !m.control);
  t.equal(results.campaign.controls, 2);
  t.same(results.migrations.map((m) => (m.control ? 'control' : m.faults.join('+') || 'none')), ['none', 'control', 'carrier-flap', 'nic-replug', 'control', 'long-pause', 'guest-firewall-flush'], 'controls spread among the migrations');
  for (const c of controls) {
    t.notOk(c.error, c.error ?? 'control ran');
    t.equal(c.verdictSource, 'agent', `the agent judged the control too: ${c.verdict} (${c.reasons.slice(0, 3).join('; ')})`);
    t.equal(c.downtimeMs, null, 'nothing was frozen');
    t.equal(c.faultRecords.length, 0);
  }
  const falsePositives = controls.filter((c) => c.verdict !== 'transparent').length;
  t.match(run.stdout, new RegExp(`false positives: ${falsePositives} of 2 controls`), 'the false-positive rate is printed beside the table');
  t.match(readFileSync(path.join(out, 'report.html'), 'utf8'), /id="controls">Controls \(sham migrations, nothing moved\): false positives: \d of 2 controls/);
  const byFault = new Map(real.map((m) => [m.faults.join('+') || 'none', m]));
  for (const m of real) {
    t.notOk(m.error, m.error ?? `${m.faults.join('+') || 'none'}: ${m.verdict}`);
    t.equal(m.verdictSource, 'agent');
    t.ok(m.blackout && m.blackout.longestGapMs >= m.downtimeMs! - 20, `blackout ${m.blackout?.longestGapMs} ms covers the ${m.downtimeMs} ms freeze`);
  }
  t.ok(byFault.get('long-pause')!.downtimeMs! >= 1300, 'long-pause: frozen 1 s more');
  t.ok(byFault.get('carrier-flap')!.linkEvents.some((e) => e.carrier === 0));
  t.equal(byFault.get('guest-firewall-flush')!.verdict, 'healed');
  t.equal(byFault.get('nic-replug')!.verdict, 'healed');
  const { stdout: namespaces } = await runCommand('ip', ['netns', 'list']);
  const ours = `flinch-sim-${run.pid}-`;
  t.ok(seenOwnNamespace, `${ours}guest was there while the campaign ran`);
  t.notOk(namespaces.includes(ours), 'no namespace left');
  t.notOk(readFileSync('/proc/mounts', 'utf8').includes(`${ours}cgroup`), 'no cgroup mount left');
  if (existsSync('/sys/fs/cgroup/freezer')) t.same(readdirSync('/sys/fs/cgroup/freezer').filter((d) => d.startsWith(ours)), [], 'no cgroup left');
});

t.test('SIGTERM to flinch alone (kill PID, timeout(1)) stops the campaign: its inner process goes too, nothing left behind', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-sim-term-'));
  let sent = false;
  let watch: NodeJS.Timeout | undefined;
  const started = Date.now();
  // Enough migrations to run for minutes if nothing stops them; the runCli limit below is well short of that.
  const run = await runCli([FLINCH, 'campaign', '--driver', 'sim', '--faults', 'none', '--migrations', '200', '--out', out], {
    timeoutMs: 120_000,
    onSpawn: (pid) => {
      // Once the inner process is migrating: its first migration is in the journal.
      watch = setInterval(() => {
        const journal = path.join(out, 'journal.jsonl');
        if (sent || !existsSync(journal) || readFileSync(journal, 'utf8').trim().split('\n').length < 2) return;
        sent = true;
        process.kill(pid, 'SIGTERM'); // the flinch process this test started, by PID
      }, 500);
    },
  });
  clearInterval(watch);
  t.ok(sent, 'SIGTERM was sent once the campaign was migrating');
  t.not(run.code, null, `flinch ended by itself after ${((Date.now() - started) / 1000).toFixed(0)} s, not at the test's limit`);
  t.equal(run.code, 143, 'and exited 128 + SIGTERM, as README\'s "Exit status" says');
  const ours = `flinch-sim-${run.pid}-`;
  t.notOk((await runCommand('ip', ['netns', 'list'])).stdout.includes(ours), 'no namespace left');
  t.notOk(readFileSync('/proc/mounts', 'utf8').includes(`${ours}cgroup`), 'no cgroup mount left');
  if (existsSync('/sys/fs/cgroup/freezer')) t.same(readdirSync('/sys/fs/cgroup/freezer').filter((d) => d === `flinch-sim-${run.pid}`), [], 'no cgroup left');
  const isRunsAgent = (pid: number) => {
    try {
      return processArguments(pid).some((argument) => argument.includes(`flinch-sim-state-${run.pid}`));
    } catch {
      return false; // gone while being read
    }
  };
  const agentsLeft = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && isRunsAgent(Number(p)));
  t.same(agentsLeft, [], "the simulated guest's agent was stopped, not orphaned");
  const journal = readFileSync(path.join(out, 'journal.jsonl'), 'utf8').trim().split('\n');
  t.ok(journal.length < 201, `the campaign stopped part-way (${journal.length - 1} migrations in its journal), resumable`);
});

t.test('SIGTERM while the lab is still being set up: what it made is removed, and flinch exits 143', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-sim-early-term-'));
  let sent = false;
  let watch: NodeJS.Timeout | undefined;
  let ours = '';
  t.teardown(async () => {
    // Whatever the checks below found: what a killed set-up left must not stay on the machine.
    if (!ours) return;
    const { stdout } = await runCommand('ip', ['netns', 'list']);
    for (const netns of stdout.split('\n').map((line) => line.split(' ')[0]!).filter((name) => name.startsWith(ours))) await runCommand('ip', ['netns', 'delete', netns]).catch(() => undefined);
    if (readFileSync('/proc/mounts', 'utf8').includes(`${ours}cgroup`)) await runCommand('umount', [`/run/${ours}cgroup`]).catch(() => undefined);
    await runCommand('rmdir', [`/run/${ours}cgroup`]).catch(() => undefined); // never recursive: it may be a live hierarchy
  });
  const run = await runCli([FLINCH, 'campaign', '--driver', 'sim', '--faults', 'none', '--migrations', '1', '--out', out], {
    timeoutMs: 60_000,
    onSpawn: (pid) => {
      ours = `flinch-sim-${pid}-`;
      // The set-up's first step is the freezer's mount point; then come the mount, two namespaces, a veth and the
      // guest's firewall, a few hundred ms before the inner process exists to be passed the signal.
      watch = setInterval(() => {
        if (sent || !existsSync(`/run/${ours}cgroup`)) return;
        sent = true;
        process.kill(pid, 'SIGTERM'); // the flinch process this test started, by PID
      }, 2);
    },
  });
  clearInterval(watch);
  t.ok(sent, 'SIGTERM was sent during the set-up');
  t.equal(run.code, 143, `exit 128 + SIGTERM (stderr: ${run.stderr.trim().split('\n').slice(-2).join(' | ')})`);
  t.match(run.stderr, /SIGTERM: stopped while the lab was being set up; what it had set up is removed/, 'one line says so');
  t.notOk((await runCommand('ip', ['netns', 'list'])).stdout.includes(ours), 'no namespace left');
  t.notOk(readFileSync('/proc/mounts', 'utf8').includes(`${ours}cgroup`), 'no cgroup mount left');
  t.notOk(existsSync(`/run/${ours}cgroup`), 'no mount point left');
});
