// `flinch collect`, `flinch token` and `flinch fleet status` as an operator runs them: real processes, a real store.
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { FLINCH, cleanEnvironment, runCli } from '../../helpers/run-cli.js';
import { freePort, inProcessAgent, sampleReport, tempDir, until } from '../../helpers/collector-fixtures.js';

t.test('collect, token, metrics and fleet status', async (t) => {
  const dir = tempDir('flinch-collect-');
  const secretFile = path.join(dir, 'fleet.secret');
  writeFileSync(secretFile, 'an-operator-fleet-secret-0123456789abcdef\n', { mode: 0o600 });
  const store = path.join(dir, 'fleet.sqlite');
  const [port, metricsPort] = [await freePort(), await freePort()];

  const token = await runCli([FLINCH, 'token', '--fleet-secret', secretFile, '--agent-id', 'web-1']);
  t.equal(token.code, 0, token.stderr);
  t.equal(token.stdout.trim(), agentKeyFor('an-operator-fleet-secret-0123456789abcdef', 'web-1'), 'the key the collector will expect');

  const collector = spawn(process.execPath, [FLINCH, 'collect', '--listen', `127.0.0.1:${port}`, '--store', store, '--fleet-secret', secretFile, '--metrics', `127.0.0.1:${metricsPort}`], {
    env: cleanEnvironment(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  collector.stderr.on('data', (d) => (stderr += d));
  t.teardown(() => void collector.kill('SIGKILL'));
  await until('listening', () => stderr.includes('metrics on'));

  const verdicts: Record<string, Array<'transparent' | 'noticed' | 'disrupted'>> = {
    'web-1': ['transparent', 'transparent', 'noticed'],
    'web-2': ['transparent', 'disrupted'],
    'db-1': ['transparent'],
  };
  const agents = Object.entries(verdicts).map(([id, list]) => {
    const agent = inProcessAgent(t, `ws://127.0.0.1:${port}`, id, agentKeyFor('an-operator-fleet-secret-0123456789abcdef', id));
    list.forEach((verdict, i) => agent.client.sendReport(sampleReport(id, i + 1, verdict)));
    return agent;
  });
  await until('acknowledged', () => agents.every((a) => a.spool.unacked.length === 0));
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.match(metrics, /^flinch_agents_connected 3$/m);
  t.match(metrics, /^flinch_reports_total\{verdict="transparent"\} 4$/m);
  t.match(metrics, /^flinch_reports_total\{verdict="disrupted"\} 1$/m);
  t.match(metrics, /^flinch_ingest_seconds_count 6$/m);
  t.match(metrics, /^process_resident_memory_bytes \d+/m, 'and the process metrics Prometheus users expect');

  for (const agent of agents) agent.client.close();
  collector.kill('SIGTERM');
  const code = await new Promise((resolve) => collector.once('exit', resolve));
  t.equal(code, 0, 'stops cleanly on SIGTERM');

  await sleep(1200);
  const json = await runCli([FLINCH, 'fleet', 'status', '--store', store, '--silent-after', '1', '--json']);
  t.equal(json.code, 0, json.stderr);
  const status = JSON.parse(json.stdout);
  t.equal(status.agents, 3);
  t.same(status.byLastVerdict, { noticed: 1, disrupted: 1, transparent: 1 });
  t.equal(status.episodes, 6);
  t.equal(status.perGuest[0].agentId, 'web-2', 'worst guest first');
  t.equal(status.perGuest[0].disruptedRate, 0.5);
  t.equal(status.guestsDisruptedRate, 1 / 3);
  t.equal(status.silent.length, 3, 'all three went quiet more than 1 s ago');
  const table = await runCli([FLINCH, 'fleet', 'status', '--store', store]);
  t.match(table.stdout, /3 agents, 6 episodes; guests with a disrupted episode: 33\.33 %/);
  t.match(table.stdout, /web-2 +2 +50\.00 %/);
});

t.test('operator mistakes get one clear line', async (t) => {
  const dir = tempDir('flinch-collect-');
  const loose = path.join(dir, 'loose.secret');
  writeFileSync(loose, 'x'.repeat(40), { mode: 0o644 });
  const cases: Array<[string[], RegExp]> = [
    [['fleet', 'status', '--store', path.join(dir, 'absent.sqlite')], /absent\.sqlite: no such store/],
    [['collect', '--listen', '127.0.0.1:0', '--store', path.join(dir, 's.sqlite')], /agents must authenticate: give --fleet-secret FILE or --agent-keys FILE/],
    [['collect', '--listen', '127.0.0.1:0', '--store', path.join(dir, 's.sqlite'), '--fleet-secret', loose], /must not be readable by group or others/],
    [['collect', '--listen', 'everywhere', '--store', path.join(dir, 's.sqlite'), '--no-auth'], /--listen: "everywhere" is not HOST:PORT/],
    [['token', '--fleet-secret', loose, '--agent-id', 'a b'], /--agent-id may hold only/],
  ];
  for (const [args, message] of cases) {
    const result = await runCli([FLINCH, ...args], { timeoutMs: 30_000 });
    t.equal(result.code, 2, args.join(' '));
    t.match(result.stderr, message);
  }
});
