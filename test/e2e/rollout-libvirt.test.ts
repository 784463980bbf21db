// `flinch rollout --driver libvirt` over real guests: two QEMU TCG domains defined and started by this test (the lab
// guest's kernel and initramfs, each with its own agent and key), a real `flinch collect` on a SQLite store, and a
// live migration of each to a second libvirtd on this machine (its own mount and UTS namespaces). The rollout must
// move both, one at a time, and read each verdict from the store as its agent reported it.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labGuestImage } from '../../harness/lab/guest-initramfs.js';
import { ReportStore } from '../../harness/collector/report-store.js';
import { FLINCH, cleanEnvironment, runCli } from '../helpers/run-cli.js';
import { freePort, tempDir, until } from '../helpers/collector-fixtures.js';
import { ensureLibvirtd, startSecondLibvirtd, testDomainXml, virsh } from '../helpers/libvirtd.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

t.test('a rollout of two real libvirt domains to another libvirtd, verdicts from their agents', async (t) => {
  await ensureLibvirtd(t);
  const second = await startSecondLibvirtd(t);
  const dir = tempDir('flinch-rollout-libvirt-');
  const secret = path.join(dir, 'fleet.secret');
  writeFileSync(secret, 'a-rollout-fleet-secret-0123456789abcdef0123456789\n');
  chmodSync(secret, 0o600);
  const storeFile = path.join(dir, 'fleet.sqlite');
  const port = await freePort();
  const collector = spawn(process.execPath, [FLINCH, 'collect', '--listen', `127.0.0.1:${port}`, '--store', storeFile, '--fleet-secret', secret, '--time-probe-interval', '2000', '--liveness-interval', '2000'], {
    env: cleanEnvironment(), stdio: ['ignore', 'ignore', 'pipe'],
  });
  let collectorLog = '';
  collector.stderr!.on('data', (d) => (collectorLog += d));
  t.teardown(() => void collector.kill('SIGKILL'));
  await until('the collector listening', () => collectorLog.includes('listening on'));

  const image = await labGuestImage('/var/cache/flinch', (line) => t.comment(line));
  const names = [1, 2].map((n) => `rollout-${process.pid}-${n}`);
  t.teardown(() => {
    for (const name of names) {
      for (const uri of ['qemu:///system', second]) {
        spawnSync('virsh', ['-c', uri, 'destroy', name]);
        spawnSync('virsh', ['-c', uri, 'undefine', name]);
      }
    }
  });
  for (const [i, name] of names.entries()) {
    const agentId = `agent-${i + 1}`;
    const token = await runCli([FLINCH, 'token', '--fleet-secret', secret, '--agent-id', agentId]);
    const xml = path.join(dir, `${name}.xml`);
    writeFileSync(xml, testDomainXml({
      name, vmlinuz: image.kernel.vmlinuz, initrd: image.initrd, serialLog: path.join(dir, `${name}.serial.log`), mac: `52:54:00:f1:2c:0${i + 1}`,
      cmdline: `flinch.collector=ws://10.0.2.2:${port} flinch.id=${agentId} flinch.token=${token.stdout.trim()} flinch.remediate=on`,
    }));
    t.equal(virsh('define', xml).status, 0, `${name} defined`);
    t.equal(virsh('start', name).status, 0, `${name} started`);
  }
  const store = new ReportStore(storeFile);
  t.teardown(() => store.close());
  await until('both agents said hello', () => store.agents().length === 2, 300_000);
  // Past their start-up: what the rollout reads is the migration, not a boot.
  await sleep(15_000);

  const out = path.join(dir, 'rollout');
  const run = await runCli([
    FLINCH, 'rollout', '--driver', 'libvirt', '--libvirt-uri', 'qemu:///system', '--destination', second, '--migrate-uri', 'tcp://127.0.0.1:49301',
    '--domain', `${names[0]}=agent-1`, '--domain', `${names[1]}=agent-2`, '--store', storeFile, '--parallel', '1', '--halt-at', '1', '--verdict-timeout', '90', '--out', out,
  ], { timeoutMs: 900_000 });
  if (run.code !== 0) t.comment(run.stderr.slice(-3000));
  t.equal(run.code, 0, 'a limit of 1 never halts');
  const result = JSON.parse(readFileSync(path.join(out, 'rollout.json'), 'utf8')) as { migrated: Array<{ guest: string; agentId: string; verdict: string; evidence: string[] }>; untouched: string[] };
  t.same(result.migrated.map((o) => o.guest), names, 'both migrated, one at a time, in order');
  for (const o of result.migrated) {
    t.ok(['transparent', 'noticed', 'healed', 'disrupted'].includes(o.verdict), `${o.guest}: an agent's verdict, ${o.verdict}: ${o.evidence.slice(0, 3).join('; ')}`);
    t.ok(o.evidence.some((e) => /notify-peers/.test(e)), "with its agent's evidence of a real QEMU migration: the destination's announce (NOTIFY_PEERS)");
  }
  for (const name of names) {
    t.equal(spawnSync('virsh', ['-c', second, 'domstate', name], { encoding: 'utf8' }).stdout.trim(), 'running', `${name} runs at the destination`);
    t.not(virsh('domstate', name).status, 0, `${name} no longer defined at the source (--persistent --undefinesource)`);
  }
});
