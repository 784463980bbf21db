import t from 'tap';
import { renderTable, summariseLinkEvents } from '../../../harness/report/terminal-table.js';
import type { MigrationResult, SeenLinkEvent } from '../../../harness/report/lab-results.js';

const event = (e: Partial<SeenLinkEvent>): SeenLinkEvent => ({
  afterCompletionMs: 0, action: 'new', ifname: 'eth0', ifindex: 2, event: null, carrier: 1, carrierChanges: 2, ...e,
});

t.test('link events are counted by kind', async (t) => {
  t.equal(summariseLinkEvents([]), '0');
  t.equal(
    summariseLinkEvents([event({ event: 'notify-peers' }), event({ event: 'igmp-resend' }), event({ event: 'notify-peers' }), event({ action: 'del' }), event({})]),
    '5 (notify-peers×2, igmp-resend×1, del eth0×1, change×1)',
  );
});

t.test('one aligned row per migration, dashes for what was not measured', async (t) => {
  const row = (index: number, downtimeMs: number | null, clockLagMs: number | null, pauseMs?: number | null): MigrationResult => ({
    ...(pauseMs !== undefined ? { pauseMs } : {}),
    index, driver: 'qmp', faults: index === 10 ? ['carrier-flap'] : [], faultRecords: [], blackout: index === 1 ? { sent: 100, received: 90, lost: 10, longestGapMs: 123.4, intervalMs: 5 } : null,
    expected: 'noticed', passed: index === 1, from: 'tap0', to: 'tap1', startedAt: '', totalMs: 1600, downtimeMs, setupMs: 1,
    transferredBytes: 1, clockLagMs, baselineOffsetMs: null, afterOffsetMs: null, guestSeenOffsetStepMs: null, linkEvents: [event({ event: 'notify-peers' })],
    observationsAfter: 1, timeRepliesAfter: 1, verdict: 'noticed', verdictSource: 'agent', reasons: [], episode: null,
  });
  const lines = renderTable([row(1, 98, 106.61, 103.25), row(10, null, null)]).split('\n');
  t.equal(lines.length, 4);
  t.match(lines[0], /^ #  driver  faults        total ms  downtime ms  pause ms  guest clock lag ms  blackout ms  link events\s+verdict$/);
  t.match(lines[2], /^ 1  qmp     none              1600           98     103\.3               106\.6        123\.4  1 \(notify-peers×1\)  noticed$/);
  t.match(lines[3], /^10  qmp     carrier-flap      1600            -         -                   -            -  1 \(notify-peers×1\)  noticed ✗$/, 'worse than expected is marked; no pause without events');
});
