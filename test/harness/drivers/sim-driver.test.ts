// The sim driver (a simulation, declared in harness/drivers/sim-driver.ts): network namespaces and a cgroup freezer,
// with the real agent inside the "guest" namespace seeing each simulated migration and fault.
import t from 'tap';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SimDriver } from '../../../harness/drivers/sim-driver.js';
import { runCommand } from '../../../system/run-command.js';
import { startAgent } from '../../helpers/agent-process.js';
import { startNetnsCollector } from '../../helpers/netns-collector.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

t.test('a frozen guest, a carrier flap, a replug and a firewall flush, each seen (and healed) by the real agent', async (t) => {
  const sim = new SimDriver({ id: String(process.pid), downtimeMs: 1500, guestAddress: '10.9.0.2', hostAddress: '10.9.0.1', prefixLength: 24, guestMac: '52:54:00:51:00:01' });
  t.teardown(() => sim.cleanup());
  await sim.prepare();
  t.match((await runCommand('ip', ['netns', 'exec', sim.guestNetns, 'nft', 'list', 'table', 'inet', 'guestfw'])).stdout, /tcp dport 22 accept/, "the guest's own firewall is loaded");
  // The safety net repairs only around migration evidence; a freeze is none, so the simulated migration is announced
  // (signed) by a real collector in the guest's namespace, as a campaign does.
  const key = 'k'.repeat(64);
  const tokenFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-sim-')), 'token');
  writeFileSync(tokenFile, `${key}\n`, { mode: 0o600 });
  const collector = await startNetnsCollector(t, sim.guestNetns, 'sim-guest', key);
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${collector.port}`, '--agent-id', 'sim-guest', '--token-file', tokenFile, '--accept-announce',
    '--remediate', 'on', '--probes', 'link,addressing,nftables,clock', '--settle', '1000'], sim.guestNetns);
  await collector.waitForHello('sim-guest');
  sim.adopt(agent.child.pid!);
  await sleep(4000); // the clock probe's warm-up

  collector.announce('sim-guest', 'starting', 'sim-1');
  const timing = await sim.migrate();
  await sim.injectFault('carrier-flap', 'after');
  await sim.injectFault('nic-replug', 'after');
  let restored = '';
  for (let i = 0; i < 100 && !restored.includes('10.9.0.2/24'); i += 1) {
    await sleep(100);
    restored = (await runCommand('ip', ['-n', sim.guestNetns, 'addr', 'show', 'dev', 'eth0']).catch(() => ({ stdout: '' }))).stdout;
  }
  t.match(restored, /10\.9\.0\.2\/24/, 'nic-replug: the new eth0 got its address back from the safety net');

  await sim.injectFault('guest-firewall-flush', 'after');
  let ruleset = '';
  for (let i = 0; i < 100 && !ruleset.includes('guestfw'); i += 1) {
    await sleep(100);
    ruleset = (await runCommand('ip', ['netns', 'exec', sim.guestNetns, 'nft', 'list', 'ruleset'])).stdout;
  }
  t.match(ruleset, /table inet guestfw/, 'guest-firewall-flush: the table is back');
  collector.announce('sim-guest', 'finished', 'sim-1');
  // By its migration: a load-induced pause during the warm-up may open (and report) an episode of its own first.
  const report = await collector.reportOf('sim-1', 30_000);
  const observed = new Set(report.observations.map((o) => o.kind));
  t.ok(report.episode.triggers.some((x) => x.kind === 'pause'), 'the agent noticed it had been stopped');
  // The freeze as the guest measured it (its pause detector woke up late), not the driver's own timing of its sleep.
  const lateBy = Math.max(...report.observations.map((o) => (o.kind === 'pause' ? o.lateByMs : 0)));
  t.ok(lateBy >= 1000 && lateBy <= timing.downtimeMs! + 1000, `the guest was held ${lateBy} ms of the driver's ${timing.downtimeMs} ms freeze`);
  t.ok(observed.has('link'), 'carrier flap and replug seen');
  t.equal(report.verdict, 'healed', JSON.stringify(report.remediation.actions.map((a) => [a.target, a.result, a.error])));
  t.equal(await sim.injectFault('guest-clock-step', 'after'), null, 'a namespace has no clock of its own to step');
  const exited = new Promise((resolve) => agent.child.once('exit', resolve));
  agent.child.kill('SIGTERM');
  await exited;
  await sim.cleanup();
  t.notOk(existsSync(`/run/netns/${sim.guestNetns}`), 'namespaces removed');
  t.notOk(existsSync(sim.freezer.dir), 'and the cgroup');
});
