// Prometheus metrics for every server, on one registry that /metrics exposes.
// Each protocol module creates its own metrics here with `metrics(registry)`-style
// helpers; names follow slipway_<protocol>_<what>_<unit>.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function newRegistry(): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r, prefix: 'slipway_process_' });
  return r;
}

/** A counter with labels, created once per registry (tests create many registries). */
export function counter<L extends string>(r: Registry, name: string, help: string, labelNames: L[] = []): Counter<L> {
  return (r.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [r] });
}

/** A latency histogram in seconds (buckets from 100 µs to 10 s). */
export function histogram<L extends string>(r: Registry, name: string, help: string, labelNames: L[] = []): Histogram<L> {
  return (
    (r.getSingleMetric(name) as Histogram<L> | undefined) ??
    new Histogram({ name, help, labelNames, registers: [r], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10] })
  );
}

/** A gauge, created once per registry. */
export function gauge<L extends string>(r: Registry, name: string, help: string, labelNames: L[] = []): Gauge<L> {
  return (r.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge({ name, help, labelNames, registers: [r] });
}
