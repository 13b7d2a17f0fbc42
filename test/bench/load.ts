import { childWorkerdPids, cpuNs } from "./procfs.js";
import autocannon from "autocannon";

/**
 * One autocannon run against one URL. autocannon runs in this (the main) thread; see main.ts
 * for why. Latencies are taken from autocannon's per-response event, which carries the
 * response time in milliseconds from `process.hrtime` (its own latency histogram has a
 * resolution of 1 ms and counts only 2xx answers, too coarse for "adds under 1 ms" and blind to
 * the 401s of the malformed scenario).
 */

export interface LoadOptions {
  url: string;
  headers?: Record<string, string>;
  connections: number;
  durationSeconds: number;
  /** Requests per second over all connections; none: as fast as the server answers. */
  overallRate?: number;
  /**
   * Read the workerd processes' CPU time from /proc before and after (`cpuUsPerRequest`).
   * Off unless asked for: the side-by-side runs read their own process's, and a scan of
   * /proc between two loads that start together would delay the second.
   */
  measureCpu?: boolean;
}

export interface LoadResult {
  /** Responses per second, every status included. */
  rps: number;
  responses: number;
  seconds: number;
  /** Latency percentiles in milliseconds, every status included. */
  p50: number;
  p99: number;
  latencies: Float64Array;
  /** Responses per HTTP status. */
  statuses: Record<string, number>;
  /** Connection errors and timeouts (not HTTP error statuses). */
  errors: number;
  timeouts: number;
  /**
   * CPU time the workerd processes spent per response, in microseconds (with `measureCpu`,
   * on Linux; else null): the Worker's own cost, which the load generator's share of the
   * cores does not move.
   */
  cpuUsPerRequest: number | null;
}

/**
 * CPU milliseconds used so far by the workerd processes this one started (Miniflare's
 * children), or null where there is no /proc.
 */
export function workerdCpuMs(): number | null {
  const pids = childWorkerdPids();
  if (pids.length === 0) return null;
  return pids.reduce((sum, pid) => sum + cpuNs(pid), 0) / 1e6;
}

/** The q-quantile (0 < q ≤ 1) of ascending `sorted`, by nearest rank; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function sortedCopy(values: Float64Array): Float64Array {
  return values.slice().sort();
}

class Samples {
  private buffer = new Float64Array(1 << 16);
  length = 0;
  push(value: number) {
    if (this.length === this.buffer.length) {
      const bigger = new Float64Array(this.buffer.length * 2);
      bigger.set(this.buffer);
      this.buffer = bigger;
    }
    this.buffer[this.length++] = value;
  }
  values(): Float64Array {
    return this.buffer.slice(0, this.length);
  }
}

/** Runs autocannon; resolves when it is done, or stops it 30 s after its duration. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const samples = new Samples();
  const statuses: Record<string, number> = {};
  const cpuBefore = options.measureCpu ? workerdCpuMs() : null;
  return new Promise<LoadResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        headers: options.headers ?? {},
        connections: options.connections,
        pipelining: 1,
        duration: options.durationSeconds,
        timeout: 10,
        ...(options.overallRate !== undefined ? { overallRate: options.overallRate } : {}),
      },
      (error: unknown, result) => {
        clearTimeout(guard);
        if (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        const latencies = samples.values();
        const sorted = sortedCopy(latencies);
        const seconds = result.duration;
        const cpuAfter = cpuBefore === null ? null : workerdCpuMs();
        const cpuUsPerRequest =
          cpuBefore === null || cpuAfter === null || samples.length === 0
            ? null
            : ((cpuAfter - cpuBefore) * 1000) / samples.length;
        resolve({
          cpuUsPerRequest,
          rps: seconds > 0 ? samples.length / seconds : 0,
          responses: samples.length,
          seconds,
          p50: quantile(sorted, 0.5),
          p99: quantile(sorted, 0.99),
          latencies,
          statuses,
          errors: result.errors,
          timeouts: result.timeouts,
        });
      },
    );
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      samples.push(responseTime);
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    });
    const guard = setTimeout(() => instance.stop(), (options.durationSeconds + 30) * 1000);
  });
}
