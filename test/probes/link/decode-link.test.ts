import t from 'tap';
import {
  decodeLinkEvent, decodeLinkMessage, formatMac, operstateName, RTM_DELLINK, RTM_NEWLINK, type RawLinkMessage,
} from '../../../probes/link/decode-link.js';

const at = { realtimeMs: 1, monotonicMs: 2 };

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
}

// The shape netlink@0.3.0 gives for an eth0 RTM_NEWLINK after a Xen netfront resume (lab notes, xen): carrier 1,
// counters 3/2/1 and IFLA_EVENT NOTIFY_PEERS.
const netfrontResume: RawLinkMessage = {
  data: { index: 2, flags: { up: true, running: true, lowerUp: true } },
  attrs: {
    ifname: 'eth0', address: Buffer.from([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]), mtu: 1500, operstate: 6, carrier: 1,
    carrierChanges: 3, carrierUpCount: 2, carrierDownCount: 1, event: u32(4),
  },
};

t.test('an RTM_NEWLINK with counters and IFLA_EVENT decodes fully', async (t) => {
  const o = decodeLinkMessage(RTM_NEWLINK, netfrontResume, at);
  t.same(o, {
    kind: 'link', action: 'new', event: 'notify-peers', at,
    link: {
      ifindex: 2, name: 'eth0', mac: '00:16:3e:00:00:01', mtu: 1500, adminUp: true, lowerUp: true, running: true,
      operstate: 'up', carrier: 1, carrierChanges: 3, carrierUpCount: 2, carrierDownCount: 1,
    },
  });
});

t.test('the raw message type decides NEW vs DEL; a dump is marked as such', async (t) => {
  t.equal(decodeLinkMessage(RTM_DELLINK, netfrontResume, at).action, 'del');
  t.equal(decodeLinkMessage(RTM_NEWLINK, netfrontResume, at, true).action, 'dump');
  t.throws(() => decodeLinkMessage(20, netfrontResume, at), /not a link message: nlmsg_type 20/);
});

t.test('IFLA_EVENT values, including ones this build does not know', async (t) => {
  t.equal(decodeLinkEvent(undefined), null);
  t.equal(decodeLinkEvent(u32(0)), 'none');
  t.equal(decodeLinkEvent(u32(5)), 'igmp-resend');
  t.equal(decodeLinkEvent(u32(6)), 'bonding-options');
  t.equal(decodeLinkEvent(u32(42)), 'unknown-42');
  t.equal(decodeLinkEvent(Buffer.from([4, 0, 0, 0, 9, 9]).subarray(0, 4)), 'notify-peers', 'reads a view at its offset');
});

t.test('missing attributes become nulls, not zeros', async (t) => {
  const o = decodeLinkMessage(RTM_NEWLINK, { data: { index: 7 }, attrs: { ifname: 'tun0' } }, at);
  t.equal(o.link.mac, null);
  t.equal(o.link.carrier, null);
  t.equal(o.link.carrierChanges, null);
  t.equal(o.link.operstate, 'unknown');
  t.equal(o.link.adminUp, false);
  t.equal(o.event, null);
});

t.test('small helpers', async (t) => {
  t.equal(formatMac(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01])), 'de:ad:be:ef:00:01');
  t.equal(formatMac(Buffer.alloc(0)), null);
  t.equal(operstateName(2), 'down');
  t.equal(operstateName(5), 'dormant');
  t.equal(operstateName(99), 'unknown-99');
});
