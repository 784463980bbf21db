// `flinch enroll`: what it prints and writes is checked by other programs than flinch's own writer: the user-data is
// read as YAML 1.1 (cloud-init's PyYAML dialect), agent.yaml by the real agent's check-config, the seed image by
// genisoimage's isoinfo. Booting a cloud image with the seed is the own-image test's part, not this file's.
import t from 'tap';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { FLINCH, FLINCH_AGENT, runCli } from '../helpers/run-cli.js';
import { tempDir } from '../helpers/collector-fixtures.js';
import { enrollment } from '../../harness/enroll.js';
import { UserError } from '../../contract/command-line.js';

const dir = tempDir('flinch-enroll-');
const secret = path.join(dir, 'fleet.secret');
writeFileSync(secret, 'enroll-test-fleet-secret-0123456789abcdef0123\n');
chmodSync(secret, 0o600);

interface CloudConfig {
  write_files: Array<{ path: string; permissions: string; owner: string; content: string }>;
  runcmd?: string[][];
}
const fileOf = (config: CloudConfig, file: string) => config.write_files.find((f) => f.path === file)!;

t.test('printed: a #cloud-config with the key from the fleet secret and an agent.yaml the agent accepts', async (t) => {
  const run = await runCli([FLINCH, 'enroll', '--agent-id', 'web-1', '--fleet-secret', secret, '--collector', 'ws://192.168.122.1:7431', '--remediate', 'on']);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /^#cloud-config\n/);
  const config = parse(run.stdout, { version: '1.1' }) as CloudConfig;
  const token = await runCli([FLINCH, 'token', '--fleet-secret', secret, '--agent-id', 'web-1']);
  t.equal(fileOf(config, '/etc/flinch/token').content, token.stdout, 'the same key flinch token derives');
  t.equal(fileOf(config, '/etc/flinch/token').permissions, '0600');
  t.notOk(config.runcmd, 'no package to install without a seed');
  const agentYaml = fileOf(config, '/etc/flinch/agent.yaml').content;
  const settings = parse(agentYaml, { version: '1.1' }) as Record<string, unknown>;
  t.equal(settings.remediate, 'on', 'a string even for a YAML 1.1 reader, where a bare on is true');
  t.same(settings, { 'agent-id': 'web-1', collector: 'ws://192.168.122.1:7431', 'token-file': '/etc/flinch/token', remediate: 'on', 'state-dir': '/var/lib/flinch' });
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, agentYaml);
  const check = spawnSync(process.execPath, [FLINCH_AGENT, 'check-config', '--config', file], { encoding: 'utf8' });
  t.equal(check.status, 0, `the real agent's check-config accepts it: ${check.stdout}${check.stderr}`);
});

t.test('--collector-failover: agent.yaml says so, and the real agent accepts it; one collector alone is refused', async (t) => {
  const run = await runCli([FLINCH, 'enroll', '--agent-id', 'web-2', '--fleet-secret', secret, '--collector', 'ws://c1:7431', '--collector', 'ws://c2:7431', '--collector-failover']);
  t.equal(run.code, 0, run.stderr);
  const agentYaml = fileOf(parse(run.stdout, { version: '1.1' }) as CloudConfig, '/etc/flinch/agent.yaml').content;
  t.match(parse(agentYaml, { version: '1.1' }), { collector: ['ws://c1:7431', 'ws://c2:7431'], 'collector-failover': true });
  const file = path.join(dir, 'failover.yaml');
  writeFileSync(file, agentYaml);
  const check = spawnSync(process.execPath, [FLINCH_AGENT, 'check-config', '--config', file], { encoding: 'utf8' });
  t.equal(check.status, 0, `the real agent's check-config accepts it: ${check.stdout}${check.stderr}`);
  const alone = await runCli([FLINCH, 'enroll', '--agent-id', 'web-2', '--fleet-secret', secret, '--collector', 'ws://c1:7431', '--collector-failover']);
  t.equal(alone.code, 2);
  t.match(alone.stderr, /--collector-failover needs at least two --collector/);
});

t.test('written: token and user-data 0600; a seed image labelled cidata with the .deb that its first boot installs', async (t) => {
  const out = path.join(dir, 'out');
  const seed = path.join(dir, 'seed.iso');
  const deb = path.join(dir, 'flinch-agent_9.9_amd64.deb');
  writeFileSync(deb, 'a stand-in for the package: enroll copies it, the guest installs it\n');
  const run = await runCli([FLINCH, 'enroll', '--agent-id', 'db-7', '--fleet-secret', secret, '--collector', 'wss://c1.example:7431', '--collector', 'wss://c2.example:7431', '--out', out, '--seed-image', seed, '--deb', deb]);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, '', 'nothing on standard output when written');
  for (const [name, mode] of [['token', 0o600], ['user-data', 0o600], ['agent.yaml', 0o644], ['meta-data', 0o644]] as const) {
    t.equal(statSync(path.join(out, name)).mode & 0o777, mode, `${name} ${mode.toString(8)}`);
  }
  t.equal(statSync(seed).mode & 0o777, 0o600, 'the seed holds the key: 0600');
  t.same((parse(readFileSync(path.join(out, 'agent.yaml'), 'utf8')) as { collector: string[] }).collector, ['wss://c1.example:7431', 'wss://c2.example:7431'], 'two collectors: a sharded list');
  t.match(spawnSync('isoinfo', ['-d', '-i', seed], { encoding: 'utf8' }).stdout, /Volume id: cidata/, "NoCloud's label");
  const listing = spawnSync('isoinfo', ['-R', '-f', '-i', seed], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
  t.same(listing, ['/flinch-agent.deb', '/meta-data', '/user-data']);
  const extract = (name: string) => spawnSync('isoinfo', ['-R', '-i', seed, '-x', name], { encoding: 'utf8' }).stdout;
  t.equal(extract('/flinch-agent.deb'), readFileSync(deb, 'utf8'), 'the package, as given');
  t.match(extract('/meta-data'), /^instance-id: flinch-db-7\n$/);
  const config = parse(extract('/user-data'), { version: '1.1' }) as CloudConfig;
  t.match(config.runcmd?.[0]?.[2], /mount -o ro \/dev\/disk\/by-label\/cidata .* dpkg -i --force-confold \/run\/flinch-seed\/flinch-agent\.deb/, 'installs it keeping the written agent.yaml');
  t.same(config.runcmd?.[1], ['systemctl', 'enable', '--now', 'flinch-agent']);
  t.equal(readFileSync(path.join(out, 'user-data'), 'utf8'), extract('/user-data'), 'the user-data written beside it is the seed\'s own, install step and all');
});

t.test('bad input: one line, exit 2, nothing written', async (t) => {
  const out = path.join(dir, 'never');
  const cases: Array<[string[], RegExp]> = [
    [['--agent-id', 'a b'], /--agent-id may hold only/],
    [['--agent-id', 'x', '--collector', 'http://c:1'], /--collector http:\/\/c:1: the collector URL must start with ws:\/\/ or wss:\/\//],
    [['--agent-id', 'x', '--collector', 'ws://c:1', '--collector', 'ws://c:1'], /--collector: at most 64, each once/],
    [['--agent-id', 'x', '--remediate', 'yes'], /--remediate yes: choose off, dry-run or on/],
    [['--agent-id', 'x', '--deb', '/etc/hostname'], /--deb goes on the seed: give --seed-image FILE too/],
    [['--agent-id', 'x', '--seed-image', path.join(dir, 's.iso'), '--deb', '/nonexistent.deb'], /--deb \/nonexistent\.deb: no such file/],
  ];
  for (const [args, message] of cases) {
    const run = await runCli([FLINCH, 'enroll', '--fleet-secret', secret, '--out', out, ...args]);
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, new RegExp(`^flinch: ${message.source}[^\\n]*\\n$`), run.stderr);
  }
  const open = path.join(dir, 'open.secret');
  writeFileSync(open, 'enroll-test-fleet-secret-0123456789abcdef0123\n', { mode: 0o644 });
  chmodSync(open, 0o644);
  const loose = await runCli([FLINCH, 'enroll', '--fleet-secret', open, '--agent-id', 'x']);
  t.equal(loose.code, 2);
  t.match(loose.stderr, /must not be readable by group or others/);
  t.throws(() => statSync(out), 'no folder was made for input that was refused');
});

t.test('whatever the id and collector URL, the user-data is YAML whose files hold exactly them, or the input is refused', async (t) => {
  const idChars = fc.constantFrom(...'aZ09._:@-\n "\'#{}[]&*!|>%`\\\u0000\u001b'.split(''));
  fc.assert(fc.property(fc.string({ unit: idChars, minLength: 1, maxLength: 40 }), fc.webUrl(), fc.string({ maxLength: 20 }), (agentId, url, path) => {
    const collector = `ws${url.slice(url.indexOf(':'))}${encodeURIComponent(path)}`;
    let enrolled;
    try {
      enrolled = enrollment({ agentId, fleetSecretFile: secret, collectors: [collector], remediate: 'dry-run' });
    } catch (error) {
      if (!(error instanceof UserError) || error.exitCode !== 2 || /\n/.test(error.message)) throw error;
      return;
    }
    const config = parse(enrolled.userData(true), { version: '1.1' }) as CloudConfig;
    const settings = parse(fileOf(config, '/etc/flinch/agent.yaml').content, { version: '1.1' }) as Record<string, unknown>;
    if (settings['agent-id'] !== agentId) throw new Error(`agent id ${JSON.stringify(agentId)} came back as ${JSON.stringify(settings['agent-id'])}`);
    if (settings.collector !== collector) throw new Error(`collector ${collector} came back as ${String(settings.collector)}`);
    if (fileOf(config, '/etc/flinch/token').content !== `${enrolled.token}\n`) throw new Error('the token changed on the way');
  }), { numRuns: 300 });
  t.pass('300 generated ids and URLs');
});
