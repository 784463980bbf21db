import type { Observation, ObservationKind } from '../../contract/observation.js';

const at = { realtimeMs: 1_764_590_000_000, monotonicMs: 12_345.678 };

/**
 * One well-formed observation of each kind, with its optional fields filled in, as the agent's probes make them
 * (the values are those real probes printed in this project's netns tests). test/contract/observation.test.ts checks
 * that the list covers every kind the contract has.
 */
export const SAMPLE_OBSERVATIONS: { [K in ObservationKind]: Extract<Observation, { kind: K }> } = {
  link: {
    kind: 'link', action: 'new', event: 'notify-peers', at,
    link: { ifindex: 2, name: 'eth0', mac: '52:54:00:12:34:56', mtu: 1500, adminUp: true, lowerUp: true, running: true, operstate: 'up', carrier: 1, carrierChanges: 2, carrierUpCount: 1, carrierDownCount: 1 },
  },
  clock: { kind: 'clock', realtimeMs: at.realtimeMs, monotonicMs: at.monotonicMs, boottimeMs: 12_350, realtimeMinusMonotonicMs: 1_764_589_987_654.3, boottimeMinusMonotonicMs: 4.3, readSpreadMs: 0.02, at },
  firewall: {
    kind: 'firewall', backend: 'iptables-nft', family: 'ipv4', hash: '0123456789abcdef', previousHash: null, rules: 1, added: ['filter INPUT -i eth0 -j ACCEPT'], removed: [],
    canary: 'present', staleInterfaceRefs: [{ table: 'inet user', chain: 'input', handle: 4, key: 'iif', writtenFor: 'eth0', now: '#7' }], trigger: 'event',
    committedBy: { generation: 12, pid: 321, process: 'nft' }, at,
  },
  address: { kind: 'address', action: 'dump', reconciled: false, ifindex: 2, family: 'inet6', address: 'fe80::5054:ff:fe12:3456', prefixLength: 64, scope: 253, at },
  route: { kind: 'route', action: 'del', reconciled: true, family: 'inet', table: 254, destination: 'default', gateway: '192.0.2.1', oif: 2, protocol: 'dhcp', scope: 'universe', type: 'unicast', at },
  neighbour: { kind: 'neighbour', action: 'new', ifindex: 2, address: '192.0.2.1', lladdr: 'fe:ff:ff:ff:ff:ff', state: ['reachable'], at },
  kmsg: { kind: 'kmsg', seq: 812, kernelTimeMs: 91_234.5, priority: 6, facility: 0, message: 'Freezing user space processes', raw: '6,812,91234500,-;Freezing user space processes', tags: ['suspend-resume'], lostBefore: 0, replay: false, at },
  xen: { kind: 'xen', change: 'domid', path: 'domid', value: '7', previous: '3', at },
  pause: { kind: 'pause', lateByMs: 1_203.4, stealMs: 10, at },
  'host-offset': { kind: 'host-offset', offsetMs: -74.2, rttMs: 0.4, changeMs: -73.9, cause: 'flinch-clock-heal', at },
  connection: { kind: 'connection', event: 'reset', detail: 'ECONNRESET', at },
  'probe-status': { kind: 'probe-status', probe: 'xen', status: 'unavailable', reason: 'not a Xen guest', at },
  'safety-net': { kind: 'safety-net', what: 'restore-nft-table', target: 'inet kube-proxy', result: 'left-alone', why: 'changed-outside-migration', error: 'none', at },
};
