import { median } from "./load.js";
import type { PairResult } from "./side-by-side.js";

/**
 * The benchmark's outputs: the human report (machine, command, one table, the fixed-rate
 * latencies) and the JSON line `{"ratios", "rps", "latency_ms"}`.
 */

export type ScenarioName =
  | "passthrough"
  | "hot"
  | "malformed"
  | "ratelimited"
  | "jwt"
  | "cold_passthrough"
  | "cold"
  | "hono_bearer_auth"
  | "oauth_provider";

/** One scenario's saturating runs, summarised over the rounds (medians). */
export interface ScenarioSummary {
  name: ScenarioName;
  label: string;
  rps: number;
  p50: number;
  p99: number;
  /** Responses per HTTP status, over every round. */
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  /** rps of every round, in order. */
  rounds: number[];
  /** workerd CPU microseconds per response, median over the rounds (null: not measurable). */
  cpuUs: number | null;
}

export interface RatioSpec {
  name: string;
  numerator: ScenarioName;
  denominator: ScenarioName;
  /** The goal for the ratio, when it sets one. */
  goal?: number;
}

/** The ratios, each on the row of its numerator. Goals are the issue's. */
export const RATIOS: readonly RatioSpec[] = [
  { name: "hot_vs_passthrough", numerator: "hot", denominator: "passthrough", goal: 0.9 },
  { name: "cold_vs_passthrough", numerator: "cold", denominator: "cold_passthrough" },
  {
    name: "malformed_vs_passthrough",
    numerator: "malformed",
    denominator: "passthrough",
    goal: 0.95,
  },
  { name: "ratelimited_vs_hot", numerator: "ratelimited", denominator: "hot", goal: 0.8 },
  { name: "jwt_vs_passthrough", numerator: "jwt", denominator: "passthrough", goal: 0.85 },
  { name: "hono_bearer_auth_vs_hot", numerator: "hono_bearer_auth", denominator: "hot" },
  { name: "oauth_provider_vs_hot", numerator: "oauth_provider", denominator: "hot" },
];

/** Goal of `hot_added_p99_ms`: the hot path adds under this many milliseconds at p99. */
export const HOT_ADDED_P99_GOAL_MS = 1;

export interface FixedRateLatency {
  /** Requests per second of the fixed-rate runs, over all their connections. */
  rate: number;
  connections: number;
  passthrough: { p50: number; p99: number; rps: number; samples: number };
  hot: { p50: number; p99: number; rps: number; samples: number };
  hotAddedP99: number;
}

export interface Report {
  command: string;
  machine: string;
  software: string;
  settings: string;
  setup: string[];
  scenarios: ScenarioSummary[];
  /** The ratios measured side by side (side-by-side.ts); empty where that was not possible. */
  pairs: PairResult[];
  /** How the processes were placed on the cores for the side-by-side runs. */
  pinning: string;
  /** Scenarios with no measurement yet, and why. */
  placeholders: Partial<Record<ScenarioName, string>>;
  latency: FixedRateLatency;
  notes: string[];
}

export interface BenchJson {
  ratios: Record<string, number | null>;
  rps: Record<string, number | null>;
  latency_ms: {
    passthrough: { p50: number; p99: number };
    hot: { p50: number; p99: number };
    hot_added_p99_ms: number;
  };
}

const round = (value: number, digits: number) => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};

/**
 * A ratio as reported: measured side by side when it was (side-by-side.ts), else from the
 * sequential runs (`sequentialRatio`).
 */
export function ratioValue(report: Report, spec: RatioSpec): number | null {
  const pair = report.pairs.find((p) => p.name === spec.name);
  if (pair && pair.rounds.length > 0) return pair.value;
  return sequentialRatio(report, spec);
}

/**
 * A ratio of two sequential saturating runs: the median, over the rounds, of the ratio within
 * each round. Both
 * runs of a round are seconds apart, so this cancels the machine's drift between rounds
 * (a shared VM's throughput wanders by 10–30 % over a minute), which a ratio of the two
 * medians would not. Falls back to the ratio of medians when the rounds do not pair up.
 */
export function sequentialRatio(report: Report, spec: RatioSpec): number | null {
  const numerator = report.scenarios.find((s) => s.name === spec.numerator);
  const denominator = report.scenarios.find((s) => s.name === spec.denominator);
  if (!numerator || !denominator) return null;
  const pairs = numerator.rounds.length === denominator.rounds.length ? numerator.rounds.length : 0;
  const perRound: number[] = [];
  for (let round = 0; round < pairs; round++) {
    const below = denominator.rounds[round]!;
    if (below > 0) perRound.push(numerator.rounds[round]! / below);
  }
  if (perRound.length > 0) return median(perRound);
  return denominator.rps === 0 ? null : numerator.rps / denominator.rps;
}

/** "min–max" of a side-by-side ratio's rounds, or "-" when it was not measured that way. */
function pairRange(report: Report, spec: RatioSpec): string {
  const pair = report.pairs.find((p) => p.name === spec.name);
  if (!pair || pair.rounds.length === 0) return "-";
  return `${Math.min(...pair.rounds).toFixed(2)}-${Math.max(...pair.rounds).toFixed(2)}`;
}

export function toJson(report: Report): BenchJson {
  const ratios: Record<string, number | null> = {};
  for (const spec of RATIOS) {
    const value = ratioValue(report, spec);
    ratios[spec.name] = value === null ? null : round(value, 3);
  }
  const rps: Record<string, number | null> = {};
  for (const scenario of report.scenarios) rps[scenario.name] = Math.round(scenario.rps);
  for (const name of Object.keys(report.placeholders)) rps[name] = null;
  const { latency } = report;
  return {
    ratios,
    rps,
    latency_ms: {
      passthrough: {
        p50: round(latency.passthrough.p50, 3),
        p99: round(latency.passthrough.p99, 3),
      },
      hot: { p50: round(latency.hot.p50, 3), p99: round(latency.hot.p99, 3) },
      hot_added_p99_ms: round(latency.hotAddedP99, 3),
    },
  };
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(3) : "-");

function spread(rounds: number[]): string {
  if (rounds.length < 2) return "";
  return `${((100 * (Math.max(...rounds) - Math.min(...rounds))) / median(rounds)).toFixed(1)}%`;
}

function statusText(scenario: ScenarioSummary): string {
  const parts = Object.entries(scenario.statuses)
    .sort(([, a], [, b]) => b - a)
    .map(([status, count]) => {
      const total = Object.values(scenario.statuses).reduce((sum, n) => sum + n, 0);
      return count === total ? status : `${status} ${((100 * count) / total).toFixed(1)}%`;
    });
  if (scenario.errors > 0) parts.push(`${scenario.errors} errors`);
  if (scenario.timeouts > 0) parts.push(`${scenario.timeouts} timeouts`);
  return parts.join(", ");
}

/** Rows as aligned text columns; the columns numbered in `rightAligned` are right-aligned. */
function table(rows: string[][], rightAligned: number[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  const numeric = new Set(rightAligned);
  return rows.map((row) =>
    row
      .map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** The human report, ready to print. */
export function formatReport(report: Report): string {
  const lines: string[] = [];
  lines.push("Keygate benchmark");
  lines.push(`command:  ${report.command}`);
  lines.push(`machine:  ${report.machine}`);
  lines.push(`software: ${report.software}`);
  lines.push(`settings: ${report.settings}`);
  for (const line of report.setup) lines.push(`          ${line}`);
  lines.push("");

  const rows: string[][] = [
    [
      "scenario",
      "rps",
      "spread",
      "p50 ms",
      "p99 ms",
      "cpu µs",
      "answers",
      "ratio",
      "value",
      "range",
      "sequential",
      "goal",
    ],
  ];
  const order: ScenarioName[] = [
    "passthrough",
    "hot",
    "malformed",
    "ratelimited",
    "jwt",
    "cold_passthrough",
    "cold",
    "hono_bearer_auth",
    "oauth_provider",
  ];
  for (const name of order) {
    const spec = RATIOS.find((r) => r.numerator === name);
    const value = spec ? ratioValue(report, spec) : null;
    const sequential = spec ? sequentialRatio(report, spec) : null;
    const ratioCells = spec
      ? [
          spec.name,
          value === null ? "null" : value.toFixed(3),
          pairRange(report, spec),
          sequential === null ? "-" : sequential.toFixed(3),
          spec.goal === undefined ? "" : `>= ${spec.goal.toFixed(2)}`,
        ]
      : ["", "", "", ""];
    const scenario = report.scenarios.find((s) => s.name === name);
    const placeholder = report.placeholders[name];
    if (scenario) {
      rows.push([
        scenario.label,
        integer.format(scenario.rps),
        spread(scenario.rounds),
        ms(scenario.p50),
        ms(scenario.p99),
        scenario.cpuUs === null ? "-" : scenario.cpuUs.toFixed(0),
        statusText(scenario),
        ...ratioCells,
      ]);
    } else if (placeholder !== undefined) {
      rows.push([name, "-", "", "-", "-", "-", placeholder, ...ratioCells]);
    }
  }
  lines.push(...table(rows, [1, 2, 3, 4, 5, 8, 9, 10]));
  lines.push(
    "rps, p50, p99: saturating runs, one scenario at a time, median over the rounds; spread:",
    "(max - min) / median of the rounds' rps; cpu µs: workerd's CPU time per response (all its",
    "threads, median over the rounds); answers: HTTP statuses under load.",
    "value: the ratio measured side by side (both scenarios at once, in two workerd processes",
    "sharing one core: throughput per CPU-second, cpu µs of the denominator / of the numerator),",
    "median over its rounds; range: its rounds' min-max; sequential: the same ratio from the",
    "saturating runs (rps / rps within each round, median), which the machine's wander moves by",
    "far more. Goals are the issue's.",
    `placement: ${report.pinning}.`,
    "",
  );

  const { latency } = report;
  lines.push(
    `Latency at a fixed ${integer.format(latency.rate)} rps (${latency.connections} connections, ` +
      `every round pooled):`,
  );
  lines.push(
    ...table(
      [
        ["scenario", "rps", "p50 ms", "p99 ms", "samples"],
        [
          "passthrough",
          integer.format(latency.passthrough.rps),
          ms(latency.passthrough.p50),
          ms(latency.passthrough.p99),
          integer.format(latency.passthrough.samples),
        ],
        [
          "hot",
          integer.format(latency.hot.rps),
          ms(latency.hot.p50),
          ms(latency.hot.p99),
          integer.format(latency.hot.samples),
        ],
      ],
      [1, 2, 3, 4],
    ),
  );
  lines.push(
    `hot_added_p99_ms = p99(hot) - p99(passthrough) = ${ms(latency.hotAddedP99)} ` +
      `(goal < ${HOT_ADDED_P99_GOAL_MS} ms)`,
  );
  if (report.notes.length > 0) {
    lines.push("");
    for (const note of report.notes) lines.push(`note: ${note}`);
  }
  return lines.join("\n");
}
