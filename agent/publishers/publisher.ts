import type { Observation } from '../../contract/observation.js';
import type { Report } from '../../contract/report-schema.js';

/**
 * Where what the agent sees and concludes goes: standard output, the log, the collector, the metrics endpoint. The
 * runtime hands every observation and every report to each publisher in turn and knows none of them by name (the
 * shape of xen-guest-agent's publishers). A publisher that throws is logged and the others still get the item.
 */
export interface Publisher {
  readonly name: string;
  observation?(observation: Observation): void;
  report?(report: Report): void;
}

export function publishTo(publishers: readonly Publisher[], log: (line: string) => void) {
  const each = (call: (publisher: Publisher) => void) => {
    for (const publisher of publishers) {
      try {
        call(publisher);
      } catch (error) {
        log(`publisher ${publisher.name}: ${(error as Error).message}`);
      }
    }
  };
  return {
    observation: (observation: Observation) => each((p) => p.observation?.(observation)),
    report: (report: Report) => each((p) => p.report?.(report)),
  };
}
