import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import { diesWithThisProcess } from '../../system/child-lifetime.js';
import { unpackedChrony } from './guest-initramfs.js';

/**
 * An NTP server on the lab namespace's side of the guest link, for a guest that runs chronyd: chronyd itself with -x,
 * which serves this machine's clock and never adjusts it. It must run inside the lab namespace (it binds the lab's
 * host address), and it dies with the process that started it.
 */
export class LabTimeServer {
  private constructor(private readonly child: ChildProcess, readonly output: () => string) {}

  static async start(cacheDir: string, address: string, runDir: string): Promise<LabTimeServer> {
    const chrony = unpackedChrony(cacheDir);
    if (!chrony) throw new UserError(`chrony is not unpacked in ${cacheDir}; run npm run setup (packaging/host-setup.sh)`, EXIT.missingTool);
    const config = path.join(runDir, 'lab-chronyd.conf');
    writeFileSync(config, [
      'local stratum 8', `bindaddress ${address}`, 'allow all', 'port 123', 'cmdport 0',
      `pidfile ${path.join(runDir, 'lab-chronyd.pid')}`,
    ].join('\n') + '\n');
    const [command, args] = diesWithThisProcess(chrony.chronyd, ['-x', '-d', '-u', 'root', '-f', config]);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c) => (output += c));
    child.stderr!.on('data', (c) => (output += c));
    // chronyd -d logs its start at once; an early exit (a port taken, a bad option) is reported here, not as a guest
    // clock that never syncs.
    for (let waited = 0; waited < 3000 && child.exitCode === null && !/chronyd version/.test(output); waited += 50) await sleep(50);
    if (child.exitCode !== null) throw new Error(`the lab's chronyd exited (${child.exitCode}): ${output.trim().split('\n').slice(-3).join(' | ')}`);
    return new LabTimeServer(child, () => output);
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}
