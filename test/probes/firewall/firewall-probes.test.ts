// Integration: the agent bundle watching real nftables and iptables (nft and legacy back ends) in a private namespace.
// `watch` changes nothing, so the canaries the probes report on are put in place here, as the safety net would.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { runCommand } from '../../../system/run-command.js';
import type { ObservationOf, Observation } from '../../../contract/observation.js';
import { ipIn, testNetns } from '../../helpers/netns.js';
import { startAgent, type AgentProcess } from '../../helpers/agent-process.js';

const inNetns = (netns: string, command: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, command, ...args]);
const firewall = (backend: ObservationOf<'firewall'>['backend'], match: (o: ObservationOf<'firewall'>) => boolean = () => true) => (o: Observation) =>
  o.kind === 'firewall' && o.backend === backend && match(o);

async function agentIn(t: Test, netns: string, probes: string, legacyIdlePollMs = 200): Promise<AgentProcess> {
  const agent = startAgent(t, ['watch', '--json', '--probes', probes, '--legacy-poll', '200', '--legacy-idle-poll', String(legacyIdlePollMs)], netns);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.status !== 'running' ? (() => { throw new Error(JSON.stringify(o)); })() : o.kind === 'probe-status', 0, 10_000);
  return agent;
}

t.test('nft flush ruleset: rules removed, canary missing, seen from the netlink event', async (t) => {
  const netns = await testNetns(t);
  await inNetns(netns, 'nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input tcp dport 22 accept');
  const watching = await agentIn(t, netns, 'nftables');
  await watching.waitFor(firewall('nftables', (o) => o.trigger === 'start' && o.canary === 'not-installed'));
  t.notMatch((await inNetns(netns, 'nft', 'list', 'tables')).stdout, /flinch_canary/, 'watch installed no canary');
  watching.child.kill('SIGTERM');
  await inNetns(netns, 'nft', 'add table inet flinch_canary');
  const agent = await agentIn(t, netns, 'nftables');
  const start = (await agent.waitFor(firewall('nftables', (o) => o.trigger === 'start'))) as ObservationOf<'firewall'>;
  t.equal(start.rules, 1);
  t.equal(start.canary, 'present', 'the canary is seen');

  const mark = agent.observations.length;
  await inNetns(netns, 'nft', 'flush', 'ruleset');
  const flushed = (await agent.waitFor(firewall('nftables', (o) => o.trigger === 'event'), mark)) as ObservationOf<'firewall'>;
  t.equal(flushed.canary, 'missing');
  t.equal(flushed.rules, 0);
  t.equal(flushed.removed.length, 1);
  t.match(flushed.removed[0], /^inet user input .*"dport".*22.*accept/);
});

t.test('a re-created interface leaves an nft iif rule pointing at a dead index', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  await inNetns(netns, 'nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input iif va drop');
  const agent = await agentIn(t, netns, 'nftables');
  await agent.waitFor(firewall('nftables', (o) => o.trigger === 'start' && o.staleInterfaceRefs.length === 0));
  const mark = agent.observations.length;
  await ipIn(netns, 'link', 'del', 'va');
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const stale = (await agent.waitFor(firewall('nftables', (o) => o.staleInterfaceRefs.length > 0), mark)) as ObservationOf<'firewall'>;
  t.match(stale.staleInterfaceRefs[0], { table: 'inet user', chain: 'input', key: 'iif', writtenFor: 'va', now: /^\d+$/ });
});

t.test('iptables -F under the nft back end: seen from the netlink event', async (t) => {
  const netns = await testNetns(t);
  await inNetns(netns, 'iptables-nft', '-A', 'INPUT', '-p', 'tcp', '--dport', '9998', '-j', 'DROP');
  await inNetns(netns, 'iptables-nft', '-N', 'FLINCH-CANARY');
  const agent = await agentIn(t, netns, 'iptables');
  await agent.waitFor(firewall('iptables-nft', (o) => o.family === 'ipv4' && o.trigger === 'start' && o.rules === 1 && o.canary === 'present'));
  t.match((await inNetns(netns, 'iptables-nft-save')).stdout, /:FLINCH-CANARY/, 'the canary chain is in the filter table');
  const mark = agent.observations.length;
  await inNetns(netns, 'iptables-nft', '-F');
  const flushed = (await agent.waitFor(firewall('iptables-nft', (o) => o.family === 'ipv4'), mark)) as ObservationOf<'firewall'>;
  t.equal(flushed.trigger, 'event');
  t.same(flushed.removed, ['ipv4 filter -A INPUT -p tcp -m tcp --dport 9998 -j DROP']);
  t.equal(flushed.canary, 'present', '-F flushes rules but keeps chains');
  await inNetns(netns, 'iptables-nft', '-X');
  await agent.waitFor(firewall('iptables-nft', (o) => o.family === 'ipv4' && o.canary === 'missing'), mark);
});

t.test('iptables -F under the legacy back end: seen by the idle poll', async (t) => {
  const netns = await testNetns(t);
  await inNetns(netns, 'iptables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP');
  await inNetns(netns, 'iptables-legacy', '-N', 'FLINCH-CANARY');
  const agent = await agentIn(t, netns, 'iptables');
  await agent.waitFor(firewall('iptables-legacy', (o) => o.family === 'ipv4' && o.rules === 1 && o.canary === 'present'));
  const mark = agent.observations.length;
  await inNetns(netns, 'iptables-legacy', '-F');
  const flushed = (await agent.waitFor(firewall('iptables-legacy', (o) => o.family === 'ipv4'), mark)) as ObservationOf<'firewall'>;
  t.equal(flushed.trigger, 'poll');
  t.same(flushed.removed, ['ipv4 filter -A INPUT -p udp -m udp --dport 9 -j DROP']);
});

t.test('legacy iptables, polled rarely while nothing happens, is read at once when something does', async (t) => {
  const netns = await testNetns(t);
  await inNetns(netns, 'iptables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP');
  // An idle poll of ten minutes: within this test, only the agent's attention can read the table again.
  const agent = await agentIn(t, netns, 'iptables,link', 600_000);
  await agent.waitFor(firewall('iptables-legacy', (o) => o.family === 'ipv4' && o.trigger === 'start' && o.rules === 1));
  const mark = agent.observations.length;
  await inNetns(netns, 'iptables-legacy', '-F');
  await new Promise((resolve) => setTimeout(resolve, 2000));
  t.notOk(agent.observations.slice(mark).some(firewall('iptables-legacy')), 'a flush with nothing else happening waits for the idle poll');
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const flushed = (await agent.waitFor(firewall('iptables-legacy', (o) => o.family === 'ipv4'), mark)) as ObservationOf<'firewall'>;
  t.equal(flushed.trigger, 'poll');
  t.same(flushed.removed, ['ipv4 filter -A INPUT -p udp -m udp --dport 9 -j DROP'], 'a new interface made the agent look');
});

t.test("the agent's nft monitor goes with it, even when the agent is killed outright", async (t) => {
  const netns = await testNetns(t);
  const agent = await agentIn(t, netns, 'nftables');
  const inNamespace = async () => (await runCommand('ip', ['netns', 'pids', netns])).stdout.trim().split(/\s+/).filter(Boolean).map(Number);
  const monitors = async () => (await inNamespace()).filter((pid) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('nft\0monitor'); } catch { return false; } });
  t.equal((await monitors()).length, 1, 'one nft monitor while the agent runs');
  agent.child.kill('SIGKILL');
  await new Promise((resolve) => agent.child.once('exit', resolve));
  let left = await monitors();
  for (let i = 0; i < 50 && left.length > 0; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = await monitors();
  }
  for (const pid of left) process.kill(pid, 'SIGKILL'); // started by the agent above, so ours to end
  t.same(left, [], 'no nft monitor outlives the agent: it would block on netlink for good, pinning the namespace');
});
