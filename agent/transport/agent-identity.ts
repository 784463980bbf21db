import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { AgentIdentity } from '../../contract/messages.js';
import { FLINCH_VERSION } from '../../contract/version.js';

/** systemd's, then D-Bus's copy; a guest without either (an initramfs) has none, which the hello says as ''. */
const MACHINE_ID_FILES = ['/etc/machine-id', '/var/lib/dbus/machine-id'];

export function readMachineId(files: readonly string[] = MACHINE_ID_FILES): string {
  for (const file of files) {
    try {
      const id = readFileSync(file, 'utf8').trim();
      if (/^[0-9a-f]{32}$/.test(id)) return id;
    } catch {
      // next
    }
  }
  return '';
}

/** The guest's hardware addresses, which the hypervisor side knows too: how a collector matches an agent to a VM. */
export function readMacs(): string[] {
  const macs = new Set<string>();
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (!address.internal && address.mac !== '00:00:00:00:00:00') macs.add(address.mac.toLowerCase());
    }
  }
  return [...macs].sort().slice(0, 64);
}

/** Read afresh for every hello: a migration can change the domid, a replug can add a MAC. */
export function currentIdentity(agentId: string, xenDomid: number | null): AgentIdentity {
  return { agentId, machineId: readMachineId(), hostname: os.hostname().slice(0, 255), macs: readMacs(), xenDomid, agentVersion: FLINCH_VERSION };
}
