import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { parseHostPort } from '../../contract/command-line.js';
import type { Observation } from '../../contract/observation.js';
import type { Report } from '../../contract/report-schema.js';
import type { Publisher } from '../publishers/publisher.js';

/**
 * The agent's optional Prometheus endpoint (`--metrics 127.0.0.1:PORT`): read-only, GET /metrics and nothing else,
 * so it adds no way to change the guest. Fed from the same observations and reports the collector gets.
 */
/** The metrics endpoint is one of the agent's publishers: it counts what the others send. */
export class AgentMetrics implements Publisher {
  readonly name = 'metrics';
  readonly registry = new Registry();
  private readonly episodes = new Counter({ name: 'flinch_episodes_total', help: 'Episodes closed, by verdict', labelNames: ['verdict'] as const, registers: [this.registry] });
  private readonly remediations = new Counter({
    name: 'flinch_remediations_total',
    help: 'Safety-net actions, by what was repaired and how it went',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });
  private readonly probeUp = new Gauge({ name: 'flinch_probe_up', help: '1 while a probe runs, 0 if unavailable or failed', labelNames: ['probe'] as const, registers: [this.registry] });
  private readonly spoolUnacked = new Gauge({ name: 'flinch_spool_unacknowledged', help: 'Entries waiting for the collector to acknowledge them', registers: [this.registry] });
  private readonly spoolDropped = new Gauge({ name: 'flinch_spool_dropped', help: 'Entries dropped from a full spool since it was created', registers: [this.registry] });

  observation(observation: Observation): void {
    if (observation.kind === 'probe-status') this.probeUp.set({ probe: observation.probe }, observation.status === 'running' ? 1 : 0);
    // Counted as they happen, not from reports: a change left alone outside any episode is in no report.
    if (observation.kind === 'safety-net') this.remediations.inc({ kind: observation.what, result: observation.result });
  }

  report(report: Report): void {
    this.episodes.inc({ verdict: report.verdict });
  }

  spool(unacknowledged: number, dropped: number): void {
    this.spoolUnacked.set(unacknowledged);
    this.spoolDropped.set(dropped);
  }

  async listen(hostPort: string): Promise<{ server: http.Server; address: AddressInfo }> {
    const { host, port } = parseHostPort(hostPort);
    const server = http.createServer((request, response) => {
      if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    });
    server.requestTimeout = 5000;
    server.headersTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return { server, address: server.address() as AddressInfo };
  }
}
