// The libvirt driver against a real libvirtd (started here by hand when none runs, as on a machine without systemd)
// with a QEMU TCG domain booting the lab guest. User-mode networking reaches the collector on this host's loopback
// (10.0.2.2 from the guest) without touching the host's interfaces; it resets the agent's connection at each restore,
// which the reporting channel must survive.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { LibvirtDriver, parseDomJobInfo } from '../../../harness/drivers/libvirt-driver.js';
import { labGuestImage } from '../../../harness/lab/guest-initramfs.js';
import { FleetKeyring } from '../../../harness/collector/keyring.js';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { startCollector, tempDir, until } from '../../helpers/collector-fixtures.js';
import { ensureLibvirtd, LIBVIRT_URI as URI, testDomainXml, virsh } from '../../helpers/libvirtd.js';
import { busyMachine } from '../../helpers/exclusive.js';

await busyMachine(t);

const SECRET = 'libvirt-test-fleet-secret-0123456789abcdef';
const MAC = '52:54:00:f1:1c:09';

t.test('domjobinfo is read into numbers', async (t) => {
  const info = parseDomJobInfo('Job type:         Completed   \nOperation:        Save        \nTime elapsed:     211          ms\nData processed:   272.888 MiB\nTotal downtime:   208          ms\nSetup time:       1            ms\n');
  t.same(info, { operation: 'Save', timeElapsedMs: 211, downtimeMs: 208, setupMs: 1, dataProcessedBytes: 286143807 });
  t.same(parseDomJobInfo('Job type:         None        \n'), { operation: null, timeElapsedMs: null, downtimeMs: null, setupMs: null, dataProcessedBytes: null });
});

t.test('save/restore of a real libvirt domain: timed, libvirt\'s own figures read, the agent reconnects; a carrier flap', async (t) => {
  await ensureLibvirtd(t);
  const log = (line: string) => t.comment(line);
  const image = await labGuestImage('/var/cache/flinch', log);
  const { kernel } = image;
  const { collector, port } = await startCollector(t, { keyring: new FleetKeyring(SECRET), host: '127.0.0.1' });
  const dir = tempDir('flinch-libvirt-');
  const name = `flinch-test-${process.pid}`;
  const xml = path.join(dir, 'domain.xml');
  writeFileSync(xml, testDomainXml({
    name, vmlinuz: kernel.vmlinuz, initrd: image.initrd, serialLog: path.join(dir, 'serial.log'), mac: MAC,
    cmdline: `flinch.collector=ws://10.0.2.2:${port} flinch.id=lv-guest flinch.token=${agentKeyFor(SECRET, 'lv-guest')} flinch.remediate=dry-run`,
  }));
  t.equal(virsh('define', xml).status, 0, 'defined');
  t.teardown(() => {
    virsh('destroy', name);
    virsh('undefine', name);
  });
  t.equal(virsh('start', name).status, 0, 'started');
  const agent = await until('the guest agent', () => collector.agents.get('lv-guest'), 120_000);

  const driver = new LibvirtDriver({ uri: URI, domain: name, mode: 'save-restore', saveFile: path.join(dir, 'guest.save'), destinationUri: null, migrateUri: null, mac: MAC, virsh: 'virsh', timeoutMs: 120_000 });
  t.teardown(() => driver.cleanup());
  await driver.prepare();
  const timing = await driver.migrate();
  const pause = timing.pause!;
  t.ok(pause, "libvirt's lifecycle events bound a pause");
  const pauseMs = pause.resumedAtMs - pause.stoppedAtMs;
  t.ok(pause.stoppedAtMs >= timing.startedAtMs && pause.resumedAtMs <= timing.completedAtMs + 1000, 'inside the migration');
  // `virsh event --timestamp` stamps an event when virsh prints it: on a loaded machine the resume arrives after the
  // restore returned, by the same second allowed to "inside the migration" above (a run beside a TCG guest: +77 ms).
  t.ok(pauseMs >= timing.downtimeMs! && pauseMs <= timing.totalMs! + 1000, `the guest was stopped ${pauseMs} ms: more than libvirt's downtime, at most save + restore`);
  t.equal(driver.lastJob?.operation, 'Save', 'domjobinfo --completed describes the save');
  t.ok(timing.downtimeMs !== null && timing.downtimeMs > 0, `libvirt's downtime: ${timing.downtimeMs} ms`);
  t.ok(timing.totalMs! > timing.downtimeMs!, `save + restore took ${timing.totalMs} ms: the guest was stopped far longer than libvirt's figure`);
  t.ok(timing.transferredBytes! > 1024 * 1024, `${timing.transferredBytes} bytes saved`);
  await until('the agent back after the restore', () => agent.connections >= 2, 60_000);
  t.pass(`the agent reconnected (${agent.connections} connections): user networking reset it, the spool kept its data`);

  const from = agent.observations.length;
  await driver.injectFault('carrier-flap', 'after');
  await until('carrier 0 from the guest', () => agent.observations.slice(from).some((o) => o.observation.kind === 'link' && o.observation.link.carrier === 0), 30_000);
  t.pass('carrier-flap through virsh domif-setlink: the guest saw carrier 0');
  await t.rejects(new LibvirtDriver({ uri: URI, domain: 'no-such-domain', mode: 'save-restore', saveFile: '/tmp/x', destinationUri: null, migrateUri: null, mac: MAC, virsh: 'virsh', timeoutMs: 10_000 }).prepare(), {
    message: /virsh domstate: error: failed to get domain 'no-such-domain'/,
  });
});
