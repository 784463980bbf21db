/**
 * The rtnetlink half of the `netlink` package, the only half the agent speaks. The package's index also loads its
 * nl80211, generic-netlink and WireGuard families, whose type tables are a tenth of the agent's bundle and objects
 * built at start-up that an idle agent would carry for nothing; importing the rtnetlink modules themselves leaves
 * them out.
 */
export { createRtNetlink, RtNetlinkSocket } from 'netlink/dist/rt/rt.js';
export * as rt from 'netlink/dist/rt/structs.js';
