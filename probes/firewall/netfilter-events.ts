import { createNetlink, Protocol, type NetlinkSocket } from 'netlink';

/** NFNLGRP_NFTABLES: the multicast group `nft monitor` listens to (linux/netfilter/nfnetlink.h). */
const NFNLGRP_NFTABLES = 7;
/** NFT_MSG_NEWGEN within the nf_tables subsystem: sent once when a transaction commits. */
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NEWGEN_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;

/**
 * Calls `onCommit` once per committed nf_tables transaction, from the kernel's own notification: no polling. An
 * `nft -f` script, an `iptables-nft` command and an `nft flush ruleset` each end in one NEWGEN.
 */
export function watchNftablesCommits(onCommit: () => void, onError: (error: Error) => void): () => void {
  const socket: NetlinkSocket = createNetlink(Protocol.NETFILTER, { ref: true, recvBufferSize: 1024 * 1024, sendBufferSize: 64 * 1024 });
  socket.on('error', onError);
  socket.on('message', (messages) => {
    if (messages.some((m) => m.type === NEWGEN_TYPE)) onCommit();
  });
  socket.addMembership(NFNLGRP_NFTABLES);
  return () => socket.close();
}
