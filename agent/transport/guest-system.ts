import type { GuestSystem } from '../../contract/messages.js';
import { CONTROL_CHARACTERS } from '../../contract/report-schema.js';

/** Reading the guest takes a few shell commands (os-release, dmidecode, dmesg): bounded, and done once at start. */
export const GUEST_SYSTEM_TIMEOUT_MS = 5000;

/** What a guest's own files may say, made to fit the hello: control characters out, bounded length. */
export function guestText(text: string | undefined, maxLength: number): string {
  return (text ?? '').replace(CONTROL_CHARACTERS, ' ').trim().slice(0, maxLength);
}

/**
 * The guest's distribution, kernel and hypervisor, from systeminformation's osInfo() and system(). Null when they
 * cannot be read in time: the hello goes without, and the fleet's breakdowns count the guest as unknown.
 */
export async function readGuestSystem(timeoutMs = GUEST_SYSTEM_TIMEOUT_MS): Promise<GuestSystem | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    // Loaded when asked for, not with the agent: a `watch` or `snapshot` never needs them.
    const [{ osInfo }, { system }] = await Promise.all([import('systeminformation/lib/osinfo.js'), import('systeminformation/lib/system.js')]);
    const read = Promise.all([osInfo(), system()]).then(([os, machine]): GuestSystem => ({
      distro: guestText(os.distro, 128),
      release: guestText(os.codename && !os.release.includes(os.codename) ? `${os.release} (${os.codename})` : os.release, 128),
      kernel: guestText(os.kernel, 128),
      arch: guestText(os.arch, 32),
      virtual: machine.virtual === true,
      hypervisor: guestText(machine.virtualHost, 64),
    }));
    return await Promise.race([read, timeout]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
