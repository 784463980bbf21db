import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT } from '../../../contract/command-line.js';
import { applyAgentConfig, ConfigError, loadAgentConfig, parseAgentConfig } from '../../../agent/config/agent-config.js';
import { projectRoot } from '../../../harness/project-paths.js';
import { FLINCH_AGENT, runCli } from '../../helpers/run-cli.js';

const PACKAGED = path.join(projectRoot(), 'packaging', 'deb', 'agent.yaml');

t.test('the packaged default config is valid and says what it sets', async (t) => {
  t.same(loadAgentConfig(PACKAGED), { remediate: 'dry-run', 'state-dir': '/var/lib/flinch' });
});

t.test('every key parses to its typed value', async (t) => {
  const config = parseAgentConfig(
    [
      'collector: wss://collector.example:7431/',
      'agent-id: web-042',
      'token-file: /etc/flinch/token',
      'ca-file: /etc/flinch/ca.pem',
      'spool-max-bytes: 1048576',
      'metrics: 127.0.0.1:9431',
      'probes: [link, clock]',
      'canaries: false',
      'legacy-poll: 2000',
      'legacy-idle-poll: 30000',
      'kmsg-poll: 500',
      'remediate: "on"',
      'state-dir: /srv/flinch',
      'settle: 1500',
      'timing-noise: 300',
      'adopt-after: 60000',
      'max-actions: 5',
      'conflict-window: 20000',
    ].join('\n'),
  );
  t.equal(config.collector, 'wss://collector.example:7431/');
  t.equal(config['spool-max-bytes'], 1048576);
  t.same(parseAgentConfig('collector: [ws://a:1, ws://b:1]\n').collector, ['ws://a:1', 'ws://b:1'], 'several collectors: one shard each');
  t.same(config.probes, ['link', 'clock']);
  t.equal(config.canaries, false);
  t.equal(config['max-actions'], 5);
  t.equal(config['timing-noise'], 300);
  t.equal(config['legacy-idle-poll'], 30000, "a probe's own setting, declared with the probe");
  t.equal(config['kmsg-poll'], 500);
});

t.test('YAML 1.2: an unquoted on is the word, not a boolean', async (t) => {
  t.equal(parseAgentConfig('remediate: on\n').remediate, 'on');
});

t.test('an empty file or one with only comments means all defaults', async (t) => {
  t.same(parseAgentConfig(''), {});
  t.same(parseAgentConfig('# nothing here\n'), {});
});

const rejected: Array<[name: string, text: string, message: RegExp]> = [
  ['unknown key, with its line', 'remediate: "on"\nremediat: "off"\n', /agent\.yaml:2: unknown key "remediat" \(known keys: collector, /],
  ['wrong type', 'settle: soon\n', /agent\.yaml:1: "settle" must be integer/],
  ['boolean given as a string', 'canaries: "no"\n', /"canaries" must be boolean/],
  ['unknown remediation mode', 'remediate: yes-please\n', /"remediate" must be one of off, dry-run, on/],
  ['unknown probe', 'probes: [link, wifi]\n', /"probes" entries must be probe names \(link, /],
  ['probe listed twice', 'probes: [link, clock, link]\n', /"probes" lists the same entry twice \(entries 1 and 3\)/],
  ['collector listed twice', 'collector: [ws://a:1, ws://a:1]\n', /"collector" lists the same entry twice \(entries 1 and 2\)/],
  ['collector is not a WebSocket URL', 'collector: http://x:1\n', /"collector" must be a ws:\/\/ or wss:\/\/ URL, or a list of them/],
  ['metrics is not HOST:PORT', 'metrics: localhost\n', /"metrics" must be HOST:PORT/],
  ['relative token file', 'token-file: token\n', /"token-file" must be an absolute path/],
  ['a spool too small to hold a report', 'spool-max-bytes: 10\n', /"spool-max-bytes" must be at least/],
  ['relative state dir', 'state-dir: var/lib/flinch\n', /"state-dir" must be an absolute path/],
  ['zero is not a duration', 'settle: 0\n', /"settle" must be at least 1/],
  ['negative jitter', 'timing-noise: -5\n', /"timing-noise" must be at least 0/],
  ['agent id with a space', 'agent-id: "web 42"\n', /"agent-id" may hold only/],
  ['duplicate key', 'settle: 1\nsettle: 2\n', /agent\.yaml:2: Map keys must be unique/],
  ['broken YAML', 'probes: [link\n', /agent\.yaml:\d+: /],
  ['a list at the top', '- remediate\n', /expected a mapping/],
];
for (const [name, text, message] of rejected) {
  t.test(`rejected: ${name}`, async (t) => {
    t.throws(() => parseAgentConfig(text), ConfigError);
    t.throws(() => parseAgentConfig(text), { message });
  });
}

t.test('a missing or oversized file is a ConfigError naming the file', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-config-'));
  t.throws(() => loadAgentConfig(path.join(dir, 'absent.yaml')), { message: /absent\.yaml: no such config file/ });
  const big = path.join(dir, 'big.yaml');
  writeFileSync(big, `# ${'x'.repeat(70_000)}\n`);
  t.throws(() => loadAgentConfig(big), { message: /big\.yaml: \d+ bytes; a config file is at most/ });
});

t.test('a flag given on the command line beats the file; defaults do not', async (t) => {
  const merged = applyAgentConfig({ settle: 3000, remediate: 'on', stateDir: '/x' }, { settle: 100, remediate: 'off', 'state-dir': '/y' }, (attribute) =>
    attribute === 'remediate' ? 'cli' : 'default',
  );
  t.same(merged, { settle: 100, remediate: 'on', stateDir: '/y' });
  t.same(applyAgentConfig({}, { collector: 'ws://a:1' }, () => undefined), { collector: ['ws://a:1'] }, 'one collector becomes a list of one');
});

t.test('the agent refuses to start on a bad config: exit 78, one line, nothing written', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-config-'));
  const stateDir = path.join(dir, 'state');
  const config = path.join(dir, 'agent.yaml');
  for (const [text, message] of [
    [`state-dir: ${stateDir}\nremediate: "on"\nfrobnicate: true\n`, /agent\.yaml:3: unknown key "frobnicate"/],
    [`state-dir: ${stateDir}\nsettle: [1]\n`, /agent\.yaml:2: "settle" must be integer/],
  ] as const) {
    writeFileSync(config, text);
    const result = await runCli([FLINCH_AGENT, 'run', '--config', config], { timeoutMs: 30_000 });
    t.equal(result.code, EXIT.config, result.stderr);
    t.match(result.stderr, message);
    t.equal(result.stderr.trim().split('\n').length, 1, 'one line');
    t.notOk(existsSync(stateDir), 'no state directory: the agent did not start half-configured');
  }
  const missing = await runCli([FLINCH_AGENT, 'run', '--config', path.join(dir, 'nope.yaml')], { timeoutMs: 30_000 });
  t.equal(missing.code, EXIT.config);
  t.match(missing.stderr, /nope\.yaml: no such config file/);
});

t.test('check-config prints the settings of a good file and fails on a bad one', async (t) => {
  const good = await runCli([FLINCH_AGENT, 'check-config', '--config', PACKAGED], { timeoutMs: 30_000 });
  t.equal(good.code, 0, good.stderr);
  t.same(JSON.parse(good.stdout), { remediate: 'dry-run', 'state-dir': '/var/lib/flinch' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-config-'));
  writeFileSync(path.join(dir, 'a.yaml'), readFileSync(PACKAGED, 'utf8') + 'settle: -1\n');
  const bad = await runCli([FLINCH_AGENT, 'check-config', '--config', path.join(dir, 'a.yaml')], { timeoutMs: 30_000 });
  t.equal(bad.code, EXIT.config);
  t.match(bad.stderr, /a\.yaml:\d+: "settle" must be at least 1/);
});
