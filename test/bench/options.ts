import { parseArgs } from "node:util";
import { DEFAULT_STARTS } from "./cold-start.js";
import { PROFILE_SCENARIOS, type ProfileScenario } from "./profile.js";

/** Command-line flags of `npm run bench`. */
export interface BenchOptions {
  json: boolean;
  /** Seconds of each measured autocannon run. */
  durationSeconds: number;
  /** Connections of each saturating run. */
  connections: number;
  /** Rounds over every scenario; the report takes each scenario's median. */
  rounds: number;
  /** `--profile <scenario>`: a CPU profile of one scenario instead of the benchmark. */
  profile: ProfileScenario | null;
  /** `--cold-start`: the start-up probe instead of the benchmark. */
  coldStart: boolean;
  /** `--starts <n>`: fresh starts of each Worker in the cold-start probe. */
  starts: number;
  help: boolean;
}

/**
 * Default duration of one run. A round is 9 saturating runs and 2 fixed-rate runs, so the
 * defaults (3 rounds of 3 s: a true median of three, robust to one disturbed round) plus
 * warm-up and set-up take about 1 min 45 s; the side-by-side ratios (per round, 5 rounds of
 * 3 s for a ratio with a goal and 3 of 2 s for the others, each pair after 4 s of warm-up per
 * arrangement) take about 5 min 40 s more.
 */
export const DEFAULT_DURATION_SECONDS = 3;
export const DEFAULT_CONNECTIONS = 10;
export const DEFAULT_ROUNDS = 3;

export const USAGE = `Usage: npm run bench [-- options]

Load-tests Keygate in miniflare (workerd) with autocannon and prints a table; the numbers are
information, never a pass/fail (the exit code is 0 unless the benchmark itself fails).

Options:
  --json              print, as the last line, one JSON object {"ratios", "rps", "latency_ms"}
                      (with --cold-start: {"cold_start_ms", "script_bytes"})
  --duration <s>      seconds of each measured run (default ${DEFAULT_DURATION_SECONDS})
  --connections <n>   concurrent connections of the saturating runs (default ${DEFAULT_CONNECTIONS})
  --rounds <n>        rounds over all scenarios, order reversed every other round; each
                      scenario reports its median (default ${DEFAULT_ROUNDS}); the ratios are
                      measured side by side, per round 5 rounds of 3 s for a ratio
                      with a goal and 3 of 2 s for the others
  --profile <name>    instead of the benchmark, a CPU profile of the Worker (through workerd's
                      inspector) under one scenario: ${PROFILE_SCENARIOS.join(", ")};
                      writes a .cpuprofile and prints the busiest functions
  --cold-start        instead of the benchmark, time a fresh workerd's start to the first
                      answer of a public route, Keygate against a baseline Worker with the
                      same bindings answering "ok", started in turns; prints medians
  --starts <n>        starts of each Worker with --cold-start (default ${DEFAULT_STARTS})
  -h, --help          show this text`;

function positiveInteger(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
  }
  return value;
}

function profileScenario(text: string | undefined): ProfileScenario | null {
  if (text === undefined) return null;
  const found = PROFILE_SCENARIOS.find((name) => name === text);
  if (!found) {
    throw new Error(`--profile takes one of ${PROFILE_SCENARIOS.join(", ")}, got ${text}`);
  }
  return found;
}

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      json: { type: "boolean", default: false },
      duration: { type: "string" },
      connections: { type: "string" },
      rounds: { type: "string" },
      profile: { type: "string" },
      "cold-start": { type: "boolean", default: false },
      starts: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const coldStart = values["cold-start"];
  if (coldStart && values.profile !== undefined) {
    throw new Error("--cold-start and --profile are two different runs: choose one");
  }
  if (!coldStart && values.starts !== undefined) {
    throw new Error("--starts goes with --cold-start");
  }
  return {
    json: values.json,
    durationSeconds: positiveInteger("duration", values.duration, DEFAULT_DURATION_SECONDS),
    connections: positiveInteger("connections", values.connections, DEFAULT_CONNECTIONS),
    rounds: positiveInteger("rounds", values.rounds, DEFAULT_ROUNDS),
    profile: profileScenario(values.profile),
    coldStart,
    starts: positiveInteger("starts", values.starts, DEFAULT_STARTS),
    help: values.help,
  };
}
