import { readFileSync } from 'node:fs';
import http from 'node:http';
import { EXIT, UserError } from '../../contract/command-line.js';
import { parseHostPort } from '../../contract/command-line.js';
import { CollectorServer } from './collector-server.js';
import type { AgentKeyring } from './frame-authenticator.js';
import { FleetKeyring, ListedKeyring } from './keyring.js';
import type { RetentionPolicy } from './report-store.js';
import { openStore, type FleetStore } from './store.js';

export interface CollectOptions {
  listen: string;
  store: string;
  fleetSecret?: string;
  agentKeys?: string;
  noAuth: boolean;
  tlsCert?: string;
  tlsKey?: string;
  metrics?: string;
  timeProbeIntervalMs: number;
  retention?: RetentionPolicy;
  maxPendingPerAddress?: number;
  maxConnections?: number;
  livenessIntervalMs?: number;
}

/** `flinch collect`: a long-running fleet collector. Resolves once it is listening; stops on SIGINT/SIGTERM. */
export async function runCollector(options: CollectOptions, log: (line: string) => void): Promise<{ collector: CollectorServer; stop: () => Promise<void> }> {
  const listen = parseOrFail(options.listen, '--listen');
  const keyring = keyringFor(options);
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new UserError('--tls-cert and --tls-key go together', EXIT.usage);
  const tls = options.tlsCert && options.tlsKey ? { cert: readOrFail(options.tlsCert, 'TLS certificate'), key: readOrFail(options.tlsKey, 'TLS key') } : undefined;
  let store: FleetStore;
  try {
    store = await openStore(options.store, options.retention);
  } catch (error) {
    const message = (error as Error).message;
    // A PostgreSQL store's error already names it, without the password the URL may hold.
    throw new UserError(message.startsWith('postgres') ? `--store ${message}` : `--store ${options.store}: ${message}`, EXIT.usage);
  }
  const collector = new CollectorServer({
    host: listen.host, port: listen.port, store, keyring, tls, keepInMemory: false, timeProbeIntervalMs: options.timeProbeIntervalMs, log,
    maxPendingPerAddress: options.maxPendingPerAddress, maxConnections: options.maxConnections, livenessIntervalMs: options.livenessIntervalMs,
  });
  let metricsServer: http.Server | null = null;
  try {
    const address = await collector.start();
    log(`listening on ${tls ? 'wss' : 'ws'}://${address.address}:${address.port}, store ${store.location}${keyring ? '' : ', NO AUTHENTICATION'}`);
    if (options.metrics) {
      const at = parseOrFail(options.metrics, '--metrics');
      metricsServer = http.createServer((request, response) => {
        if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') return void response.writeHead(404).end();
        collector.metrics.registry.metrics().then(
          (text) => response.writeHead(200, { 'content-type': collector.metrics.registry.contentType }).end(text),
          () => response.writeHead(500).end(),
        );
      });
      await new Promise<void>((resolve, reject) => {
        metricsServer!.once('error', reject);
        metricsServer!.listen(at.port, at.host, () => resolve());
      });
      log(`metrics on http://${options.metrics}/metrics`);
    }
  } catch (error) {
    await collector.stop().catch(() => undefined);
    await store.close();
    throw new UserError(`cannot listen: ${(error as Error).message}`, EXIT.usage);
  }
  const stop = async () => {
    await collector.stop();
    metricsServer?.close();
    await store.close();
  };
  return { collector, stop };
}

function keyringFor(options: CollectOptions): AgentKeyring | null {
  const given = [options.fleetSecret, options.agentKeys].filter((v) => v !== undefined).length;
  if (options.noAuth) {
    if (given > 0) throw new UserError('--no-auth contradicts --fleet-secret/--agent-keys', EXIT.usage);
    return null;
  }
  if (given !== 1) throw new UserError('agents must authenticate: give --fleet-secret FILE or --agent-keys FILE (or --no-auth for a private lab network)', EXIT.usage);
  try {
    return options.fleetSecret !== undefined ? FleetKeyring.fromFile(options.fleetSecret) : ListedKeyring.fromFile(options.agentKeys!);
  } catch (error) {
    throw new UserError((error as Error).message, EXIT.usage);
  }
}

function parseOrFail(value: string, option: string): { host: string; port: number } {
  try {
    return parseHostPort(value);
  } catch (error) {
    throw new UserError(`${option}: ${(error as Error).message}`, EXIT.usage);
  }
}

function readOrFail(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new UserError(`${file}: cannot read the ${what}: ${(error as Error).message}`, EXIT.usage);
  }
}
