// tcpdump and `bridge monitor fdb` supervised for real: a bridge in a namespace with two veth ports, a "guest" in a
// second namespace whose MAC moves from the first port to the second and announces itself with arping (iputils), as
// a migrated guest does. The RARP line is QEMU's announce-self as tcpdump 4.99 printed it in the QEMU lab.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../system/run-command.js';
import { fdbLineReader, parseFdbStamp, type FdbChange } from '../../system/bridge.js';
import { parseAnnouncementLine } from '../../system/tcpdump.js';
import { NetworkWitness } from '../../harness/blackout/network-witness.js';
import { hostNowMs } from '../../harness/host-clock.js';
import { ipIn, testNetns } from '../helpers/netns.js';

t.test('tcpdump lines become announcements, and only announcements', async (t) => {
  t.same(
    parseAnnouncementLine('1796163637.881804 52:54:00:f1:1c:01 > ff:ff:ff:ff:ff:ff, ethertype Reverse ARP (0x8035), length 60: Reverse Request who-is 52:54:00:f1:1c:01 tell 52:54:00:f1:1c:01, length 46', 'tap1'),
    { atMs: 1796163637881.804, sender: '52:54:00:f1:1c:01', port: 'tap1', kind: 'rarp', announced: '52:54:00:f1:1c:01' },
  );
  t.equal(parseAnnouncementLine('1796163637.881804 52:54:00:aa:bb:cc > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.0.9.10 (ff:ff:ff:ff:ff:ff) tell 10.0.9.10, length 28', 'p0')?.kind, 'gratuitous-arp');
  t.equal(parseAnnouncementLine('1.5 52:54:00:aa:bb:cc > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Reply 10.0.9.10 is-at 52:54:00:aa:bb:cc, length 28', 'p0')?.kind, 'gratuitous-arp');
  t.equal(parseAnnouncementLine('1.5 52:54:00:aa:bb:cc > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.0.9.1 tell 10.0.9.10, length 28', 'p0'), null, 'an ordinary ARP request is not an announcement');
  t.same(
    parseAnnouncementLine('2.25 52:54:00:f1:1c:01 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fe80::5054:ff:fef1:1c01 > ff02::1: ICMP6, neighbor advertisement, tgt is fe80::5054:ff:fef1:1c01, length 32', 'tap1')?.kind,
    'unsolicited-na',
  );
  t.equal(parseAnnouncementLine('2.25 52:54:00:f1:1c:01 > 52:54:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fe80::1 > fe80::2: ICMP6, neighbor advertisement, tgt is fe80::1, length 32', 'tap1'), null, 'a solicited NA is not');
  t.equal(parseAnnouncementLine('tcpdump: listening on p0', 'p0'), null);
});

t.test('bridge monitor lines become fdb changes, stamped in UTC', async (t) => {
  t.equal(parseFdbStamp('Timestamp: Tue Dec  1 22:25:27 2026 23683 usec'), Date.UTC(2026, 11, 1, 22, 25, 27) + 23.683);
  const changes: FdbChange[] = [];
  const read = fdbLineReader((c) => changes.push(c));
  for (const line of ['Timestamp: Tue Dec  1 22:25:27 2026 23683 usec', '5e:ae:d0:28:2a:40 dev p1 master br0 permanent', 'Timestamp: Tue Dec  1 22:25:27 2026 26711 usec',
    'Deleted 52:54:00:aa:bb:cc dev p0 master br0 ', 'Timestamp: Tue Dec  1 22:25:27 2026 39190 usec', '52:54:00:aa:bb:cc dev p1 master br0 ']) read(line);
  t.same(changes.map((c) => [c.mac, c.port, c.deleted]), [['52:54:00:aa:bb:cc', 'p0', true], ['52:54:00:aa:bb:cc', 'p1', false]], "the bridge's own port address (permanent) is left out");
});

t.test('a guest whose MAC moves to another port: its announcements and the bridge learning the new port', async (t) => {
  const lab = await testNetns(t);
  const guest = await testNetns(t);
  const mac = '52:54:00:aa:bb:cc';
  await ipIn(lab, 'link', 'add', 'br0', 'type', 'bridge');
  await ipIn(lab, 'link', 'set', 'br0', 'up');
  for (const [port, side] of [['p0', 'g0'], ['p1', 'g1']] as const) {
    await ipIn(lab, 'link', 'add', port, 'type', 'veth', 'peer', 'name', side, 'netns', guest);
    await ipIn(lab, 'link', 'set', port, 'master', 'br0', 'up');
    await ipIn(guest, 'link', 'set', side, 'address', mac);
  }
  await ipIn(guest, 'addr', 'add', '10.0.9.10/24', 'dev', 'g0');
  await ipIn(guest, 'link', 'set', 'g0', 'up');
  const witness = await NetworkWitness.start(['p0', 'p1'], lab);
  t.teardown(() => witness.stop());
  const arping = (dev: string) => runCommand('ip', ['netns', 'exec', guest, 'arping', '-c', '1', '-U', '-I', dev, '10.0.9.10'], { timeout: 10_000 }).catch(() => undefined);
  const start = hostNowMs();
  await arping('g0');
  await sleep(300);
  // The "migration": the guest leaves g0 and comes up behind the other port, as QEMU's destination tap.
  await ipIn(guest, 'link', 'set', 'g0', 'down');
  await ipIn(guest, 'addr', 'add', '10.0.9.10/24', 'dev', 'g1');
  await ipIn(guest, 'link', 'set', 'g1', 'up');
  const movedAt = hostNowMs();
  await arping('g1');
  await sleep(500);
  const seen = witness.window(mac, start, hostNowMs());
  const onP1 = seen.announcements.filter((a) => a.port === 'p1' && a.kind === 'gratuitous-arp');
  t.ok(seen.announcements.some((a) => a.port === 'p0' && a.kind === 'gratuitous-arp'), 'the first gratuitous ARP came in on p0');
  t.ok(onP1.length >= 1, `the one after the move came in on p1 (${onP1.length})`);
  t.ok(onP1.every((a) => a.atMs >= movedAt - 1 && a.announced === '10.0.9.10'), 'stamped after the move, announcing the address');
  const learnt = seen.bridgeMoves.find((m) => m.port === 'p1');
  t.ok(learnt, `the bridge moved the MAC to p1 (${JSON.stringify(seen.bridgeMoves.map((m) => m.port))})`);
  t.ok(learnt!.atMs >= movedAt - 50 && learnt!.atMs <= hostNowMs(), "the fdb stamp is on this host's clock, after the move");
  t.same(witness.window('52:54:00:00:00:99', start, hostNowMs()).announcements, [], 'nothing for another MAC');
});
