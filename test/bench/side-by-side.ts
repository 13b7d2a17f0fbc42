import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { median, runLoad } from "./load.js";
import { childWorkerdPids, cpuNs } from "./procfs.js";

/**
 * Ratios measured side by side: both scenarios of a ratio load two workerd processes at the
 * same time, and the ratio is their CPU cost per response, cpu(denominator) / cpu(numerator),
 * which is the throughput each reaches per CPU-second.
 *
 * Why. On this kind of machine (a shared VM) the CPU's speed wanders by ±20 % from one second
 * to the next, so two saturating runs made one after the other differ by that much whatever
 * they run: a ratio of sequential runs moved by 0.6–1.3 between rounds of the same build.
 * Two processes running at the same instant see the same machine: both are pinned to one
 * core (the load generator to another) and the scheduler interleaves them every few
 * milliseconds. Dividing by each process's own CPU time (from /proc, nanoseconds) removes
 * the scheduler's share from the ratio. What is left is each process's own variation, ±10 %
 * per round in quiet hours and up to ±20 % in busy ones (identical processes side by side:
 * medians 0.99–1.02, rounds 0.79–1.19), hence the median over several rounds.
 *
 * A ratio's arrangements (which process serves which side) take turns round by round: where
 * both sides have an identical twin, A against the twin and the twin against A, so a
 * difference between the two processes themselves cancels too.
 */

/** One side of a pair: a scenario's request, and the workerd process that answers it. */
export interface Side {
  url: string;
  headers: Record<string, string>;
  pid: number;
}

/**
 * Unrecorded load of each arrangement before a pair's rounds. Not only for a cold JIT: the
 * scenarios measured before leave the Worker's code tuned for their paths, and a hot key
 * measured right after a burst of malformed or rate-limited requests read 0.81–0.86 of
 * passthrough where it read 0.89–0.92 after hot traffic; a few seconds of the pair's own
 * traffic settle it. The ratios are each path's steady state.
 */
export const PAIR_WARMUP_SECONDS = 4;

export interface PairSpec {
  name: string;
  /** Measured rounds, and seconds per round. */
  rounds: number;
  seconds: number;
  /** Arrangements used in turn, round by round (two when the instances can be swapped). */
  arrangements: { numerator: Side; denominator: Side }[];
}

export interface PairResult {
  name: string;
  /** cpu(denominator) / cpu(numerator) of every round. */
  rounds: number[];
  value: number;
}

/** Starts an instance and returns it with the pid of the workerd process it added. */
export async function startTracked<T>(start: () => Promise<T>): Promise<[T, number | null]> {
  const before = new Set(childWorkerdPids());
  const instance = await start();
  const added = childWorkerdPids().filter((pid) => !before.has(pid));
  return [instance, added.length === 1 ? added[0]! : null];
}

/**
 * Pins every workerd process to the last core and this process (the load generator) to the
 * first, with `taskset`; returns what was done, or why not.
 */
export function pinCores(pids: number[]): string {
  const cores = availableParallelism();
  if (cores < 2) return "not pinned (one core)";
  const last = String(cores - 1);
  try {
    for (const pid of pids)
      execFileSync("taskset", ["-a", "-p", "-c", last, String(pid)], { stdio: "ignore" });
    execFileSync("taskset", ["-a", "-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
  } catch (error) {
    return `not pinned (taskset: ${String(error instanceof Error ? error.message : error).split("\n")[0]})`;
  }
  return `workerd processes pinned to core ${last}, the load generator to core 0`;
}

/** Measures every pair for its rounds, both sides at once. */
export async function measurePairs(
  pairs: PairSpec[],
  options: { connections: number },
  progress: (message: string) => void,
): Promise<PairResult[]> {
  const results: PairResult[] = [];
  for (const pair of pairs) {
    const rounds: number[] = [];
    const both = (arrangement: PairSpec["arrangements"][number], seconds: number) =>
      Promise.all(
        [arrangement.numerator, arrangement.denominator].map((side) =>
          runLoad({
            url: side.url,
            headers: side.headers,
            connections: options.connections,
            durationSeconds: seconds,
          }),
        ),
      );
    // unrecorded: each arrangement once, so that no round measures a JIT still settling
    for (const arrangement of pair.arrangements) await both(arrangement, PAIR_WARMUP_SECONDS);
    for (let round = 0; round < pair.rounds; round++) {
      const arrangement = pair.arrangements[round % pair.arrangements.length]!;
      const { numerator, denominator } = arrangement;
      const before = [cpuNs(numerator.pid), cpuNs(denominator.pid)];
      const [num, den] = await both(arrangement, pair.seconds);
      const numCost = (cpuNs(numerator.pid) - before[0]!) / Math.max(1, num!.responses);
      const denCost = (cpuNs(denominator.pid) - before[1]!) / Math.max(1, den!.responses);
      if (numCost > 0 && den!.rps > 0) rounds.push(denCost / numCost);
    }
    const value = median(rounds);
    results.push({ name: pair.name, rounds, value });
    progress(
      `side by side ${pair.name}: ${value.toFixed(3)} ` +
        `(rounds ${rounds.map((r) => r.toFixed(3)).join(" ")})`,
    );
  }
  return results;
}
