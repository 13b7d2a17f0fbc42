import { readFileSync } from "node:fs";
import { arch, availableParallelism, cpus, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { managementApi, request } from "../e2e/support/http.js";
import { ROOT, startKeygate, type Keygate } from "../e2e/support/worker.js";
import { median, quantile, runLoad, sortedCopy, type LoadResult } from "./load.js";
import { coldStart } from "./cold-start.js";
import { parseOptions, USAGE, type BenchOptions } from "./options.js";
import { profileScenario } from "./profile.js";
import { startPeers, type Peers } from "./peers.js";
import {
  measurePairs,
  PAIR_WARMUP_SECONDS,
  pinCores,
  startTracked,
  type PairResult,
  type PairSpec,
  type Side,
} from "./side-by-side.js";
import {
  formatReport,
  RATIOS,
  toJson,
  type FixedRateLatency,
  type Report,
  type ScenarioName,
  type ScenarioSummary,
} from "./report.js";

/**
 * `npm run bench`: Keygate's throughput and latency next to a passthrough route of the same
 * Worker and next to two peers, measured in one run.
 *
 * Where things run. Every Worker runs in workerd through Miniflare, on a loopback port, with
 * no wrangler in between (`wrangler dev`'s proxy caps throughput far below workerd's):
 *
 * - instance A: Keygate as deployed (`startKeygate`, the e2e helper: the bundled Worker, KV,
 *   D1 with migrations, the coordinator Durable Object), CACHE_TTL_SECONDS at its default;
 * - instance B: the same with CACHE_TTL_SECONDS=0, for the cold path (one KV read per
 *   request). CACHE_TTL_SECONDS is a binding fixed at start-up, so cold needs its own
 *   instance; `cold_vs_passthrough` divides by instance B's own passthrough, so both terms
 *   of the ratio come from the same workerd process (instance A's and B's passthroughs are
 *   both reported, which shows how much the two instances differ on their own);
 * - the peers: two more Workers in one Miniflare (peers.ts). They cannot join instance A's
 *   Miniflare without copying `startKeygate`'s options (the helper owns them, and they change
 *   as Keygate grows bindings); since runs are sequential, only one workerd process is busy at
 *   a time and the idle ones cost nothing, so every scenario gets the machine to itself.
 *
 * The load generator. autocannon runs in this process's main thread, next to Miniflare's
 * controller, which does no per-request work (workerd owns the sockets and runs the Workers;
 * Node only starts and stops it and receives console output, of which none of the measured
 * paths writes any). With two cores, workerd's JavaScript thread and autocannon get about one
 * each; a worker thread would not add CPU, and autocannon's `workers` mode drops the
 * per-response events the sub-millisecond latencies are taken from (load.ts).
 *
 * Drift. Every scenario runs once per round for the same duration and connections, and the
 * order is reversed every other round (A B C … then … C B A), so a slow drift of the machine
 * weighs on every scenario alike; each scenario reports its median over the rounds. Before the
 * first round, every scenario gets a short unrecorded warm-up.
 *
 * Client addresses. Keygate counts invalid credentials per client address (CF-Connecting-IP,
 * which Miniflare fills in only when the client sent none) and cuts off an address that sends
 * too many. Every scenario sends its own documentation address (RFC 5737), as distinct clients
 * would, so the malformed scenario's address is cut off and no other scenario is touched by it.
 *
 * Fixed-rate latency. autocannon's `overallRate` is not a smooth pace: each connection sends
 * back to back until it has made its share of the second's requests, then waits for the next
 * second. With many connections the start of each second is a burst at full concurrency, and
 * the percentiles would measure that queue rather than the Worker. The fixed-rate runs
 * therefore use a single connection (LATENCY_CONNECTIONS): at most one request is in flight,
 * nothing queues behind it, and each latency is one request's own time through workerd. The
 * rate is LATENCY_LOAD_FRACTION of instance A's saturated passthrough rps from this run.
 */

/** Keygate's `ROUTE_RULES` in both instances: the passthrough route; everything else needs a key. */
const ROUTE_RULES = [{ path: "/public/*", public: true }];
const WARMUP_SECONDS = 1;
/**
 * Side-by-side rounds per `--rounds` (each ratio alternates the twin instances) and their
 * length: a ratio with a goal gets 5 rounds of 3 s per `--rounds` (15 by default), the others
 * 3 of 2 s. One 2-second round of a ratio varies by about ±0.06–0.10 on this machine, and the
 * spread of the median shrinks with the square root of the time measured (side-by-side.ts).
 */
const SIDE_BY_SIDE = {
  goal: { roundsPerRound: 5, seconds: 3 },
  other: { roundsPerRound: 3, seconds: 2 },
} as const;
const sideBySideOf = (ratio: { goal?: number }) =>
  ratio.goal === undefined ? SIDE_BY_SIDE.other : SIDE_BY_SIDE.goal;
const LATENCY_LOAD_FRACTION = 0.4;
const LATENCY_CONNECTIONS = 1;
/** Everything but the load runs (start-up, seeding, stopping) must fit in this, with margin. */
const SETUP_BUDGET_SECONDS = 180;
const STOP_TIMEOUT_MS = 15_000;

interface Scenario {
  name: ScenarioName;
  label: string;
  url: string;
  headers: Record<string, string>;
  /** Statuses a correct answer may have (checked once before the load). */
  expect: number[];
}

const started = performance.now();
function progress(message: string) {
  const seconds = ((performance.now() - started) / 1000).toFixed(0).padStart(3);
  process.stderr.write(`[bench ${seconds}s] ${message}\n`);
}

function versionOf(pkg: string): string {
  try {
    const text = readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8");
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

async function withTimeout<T>(what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A consumer with one key; returns the key's secret. */
async function createKey(keygate: Keygate, name: string, extra: object = {}): Promise<string> {
  const api = managementApi(keygate.url, keygate.adminToken);
  const consumer = await api.post("/consumers", { name });
  if (consumer.status !== 201 || typeof consumer.body.id !== "string") {
    throw new Error(
      `creating consumer ${name}: ${consumer.status} ${JSON.stringify(consumer.body)}`,
    );
  }
  const key = await api.post(`/consumers/${consumer.body.id}/keys`, {
    name,
    scopes: ["bench:read"],
    ...extra,
  });
  if (key.status !== 201 || typeof key.body.key !== "string") {
    throw new Error(`creating the ${name} key: ${key.status} ${JSON.stringify(key.body)}`);
  }
  return key.body.key;
}

/** Exchanges a key for an access token (`POST /_keygate/v1/token`, the longest TTL allowed). */
async function exchangeForToken(keygate: Keygate, secret: string): Promise<string> {
  const reply = await request(keygate.url, "POST", "/_keygate/v1/token", {
    headers: { Authorization: `Bearer ${secret}` },
    body: { expiresIn: 3600 },
  });
  if (reply.status !== 200 || typeof reply.body.access_token !== "string") {
    throw new Error(`exchanging a key for a token: ${reply.status} ${JSON.stringify(reply.body)}`);
  }
  if (typeof reply.body.expires_in === "number" && reply.body.expires_in < 600) {
    throw new Error(`the access token lives ${reply.body.expires_in} s, shorter than a bench run`);
  }
  return reply.body.access_token;
}

/** The same secret with its last checksum character changed: fails the CRC, no storage read. */
function breakChecksum(secret: string): string {
  const last = secret.at(-1);
  return secret.slice(0, -1) + (last === "A" ? "B" : "A");
}

/** Each scenario's client address (see "Client addresses" above). */
const CLIENT_ADDRESS: Record<Scenario["name"], string> = {
  passthrough: "198.51.100.1",
  hot: "198.51.100.2",
  malformed: "203.0.113.66",
  ratelimited: "198.51.100.4",
  jwt: "198.51.100.9",
  cold_passthrough: "198.51.100.5",
  cold: "198.51.100.6",
  hono_bearer_auth: "198.51.100.7",
  oauth_provider: "198.51.100.8",
};

function headersOf(name: Scenario["name"], token?: string): Record<string, string> {
  return {
    "CF-Connecting-IP": CLIENT_ADDRESS[name],
    ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
  };
}

async function get(url: string, headers: Record<string, string>) {
  const target = new URL(url);
  return request(target.origin, "GET", target.pathname, { headers });
}

/** One request per scenario: refuses to measure a scenario that answers the wrong thing. */
async function checkScenario(scenario: Scenario): Promise<number> {
  const reply = await get(scenario.url, scenario.headers);
  if (!scenario.expect.includes(reply.status)) {
    throw new Error(
      `scenario ${scenario.name}: expected ${scenario.expect.join(" or ")}, got ` +
        `${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`,
    );
  }
  return reply.status;
}

function medianOrNull(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : median(known);
}

function summarise(scenario: Scenario, runs: LoadResult[]): ScenarioSummary {
  const statuses: Record<string, number> = {};
  for (const run of runs) {
    for (const [status, count] of Object.entries(run.statuses)) {
      statuses[status] = (statuses[status] ?? 0) + count;
    }
  }
  return {
    name: scenario.name,
    label: scenario.label,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    statuses,
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    timeouts: runs.reduce((sum, r) => sum + r.timeouts, 0),
    rounds: runs.map((r) => r.rps),
    cpuUs: medianOrNull(runs.map((r) => r.cpuUsPerRequest)),
  };
}

function pooled(runs: LoadResult[]) {
  const total = runs.reduce((sum, r) => sum + r.latencies.length, 0);
  const all = new Float64Array(total);
  let offset = 0;
  for (const run of runs) {
    all.set(run.latencies, offset);
    offset += run.latencies.length;
  }
  const sorted = sortedCopy(all);
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    rps: median(runs.map((r) => r.rps)),
    samples: total,
  };
}

/**
 * The keys instance A (and its twin) is measured with: a hot key, a rate-limited key whose
 * whole budget (1 request per hour) is spent here, and an access token of the hot key.
 */
async function seedKeygate(keygate: Keygate) {
  const [hotKey, limitedKey] = await Promise.all([
    createKey(keygate, "bench-hot"),
    createKey(keygate, "bench-ratelimited", { rateLimit: { limit: 1, periodSeconds: 3600 } }),
  ]);
  const accessToken = await exchangeForToken(keygate, hotKey);
  const firstUse = await get(
    `${keygate.url}/bench/ratelimited`,
    headersOf("ratelimited", limitedKey),
  );
  if (firstUse.status !== 200) {
    throw new Error(`first use of the rate-limited key: ${firstUse.status}`);
  }
  return { hotKey, limitedKey, accessToken };
}

type Seeded = Awaited<ReturnType<typeof seedKeygate>>;

/** The scenarios measured on instance A (or on its twin, for the side-by-side ratios). */
function keygateScenarios(keygate: Keygate, keys: Seeded): Scenario[] {
  const scenario = (name: ScenarioName, path: string, status: number, credential?: string) => ({
    name,
    label: name,
    url: `${keygate.url}${path}`,
    headers: headersOf(name, credential),
    expect: [status],
  });
  return [
    scenario("passthrough", "/public/bench", 200),
    scenario("hot", "/bench/hot", 200, keys.hotKey),
    scenario("malformed", "/bench/malformed", 401, breakChecksum(keys.hotKey)),
    scenario("ratelimited", "/bench/ratelimited", 429, keys.limitedKey),
    scenario("jwt", "/bench/jwt", 200, keys.accessToken),
  ];
}

interface Instances {
  a?: Keygate;
  a2?: Keygate;
  b?: Keygate;
  peers?: Peers;
}

function commandLine(argv: string[]): string {
  const args = argv.map((a) => (/^[\w./=-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
  if (process.env.npm_lifecycle_event === "bench") {
    return args === "" ? "npm run bench" : `npm run bench -- ${args}`;
  }
  return `node scripts/bench.mjs${args === "" ? "" : ` ${args}`}`;
}

async function measure(
  options: BenchOptions,
  argv: string[],
  instances: Instances,
): Promise<Report> {
  progress(
    "starting Keygate (A and its twin A2: default cache; B: CACHE_TTL_SECONDS=0) and the peers",
  );
  // one at a time, so that each workerd process is known by its pid (side-by-side.ts); each
  // is registered (and stopped) as soon as it is up
  const pids: Record<string, number | null> = {};
  [instances.a, pids.a] = await startTracked(() => startKeygate({ routeRules: ROUTE_RULES }));
  [instances.a2, pids.a2] = await startTracked(() => startKeygate({ routeRules: ROUTE_RULES }));
  [instances.b, pids.b] = await startTracked(() =>
    startKeygate({ routeRules: ROUTE_RULES, cacheTtlSeconds: 0 }),
  );
  [instances.peers, pids.peers] = await startTracked(() => startPeers());
  const { a, a2, b, peers } = instances as Required<Instances>;
  const known = Object.values(pids).filter((pid): pid is number => pid !== null);
  const allKnown = known.length === Object.keys(pids).length;
  const pinning = allKnown ? pinCores(known) : "not pinned (workerd processes not found in /proc)";
  progress(pinning);

  progress("seeding keys through the management API");
  const [seeded, seeded2, coldKey] = await Promise.all([
    seedKeygate(a),
    seedKeygate(a2),
    createKey(b, "bench-cold"),
  ]);

  const onA = keygateScenarios(a, seeded);
  const onB: Scenario[] = [
    {
      name: "cold_passthrough",
      label: "passthrough (B)",
      url: `${b.url}/public/bench`,
      headers: headersOf("cold_passthrough"),
      expect: [200],
    },
    {
      name: "cold",
      label: "cold (B)",
      url: `${b.url}/bench/cold`,
      headers: headersOf("cold", coldKey),
      expect: [200],
    },
  ];
  const onPeers: Scenario[] = [
    {
      name: "hono_bearer_auth",
      label: "hono/bearer-auth",
      url: `${peers.url}${peers.hono.path}`,
      headers: headersOf("hono_bearer_auth", peers.hono.token),
      expect: [200],
    },
    {
      name: "oauth_provider",
      label: "workers-oauth-provider",
      url: `${peers.url}${peers.oauth.path}`,
      headers: headersOf("oauth_provider", peers.oauth.token),
      expect: [200],
    },
  ];
  const scenarios = [...onA, ...onB, ...onPeers];
  const notes: string[] = [];
  /** The status each scenario answered before the load: every answer under load should match. */
  const steadyStatus = new Map<Scenario, number>();
  for (const scenario of scenarios) {
    const status = await checkScenario(scenario);
    steadyStatus.set(scenario, status);
  }

  const { durationSeconds, connections, rounds } = options;
  const load = (scenario: Scenario, seconds: number, extra: object = {}) =>
    runLoad({
      url: scenario.url,
      headers: scenario.headers,
      connections,
      durationSeconds: seconds,
      ...extra,
    });

  progress(`warming up every scenario for ${WARMUP_SECONDS} s`);
  for (const scenario of scenarios) await load(scenario, WARMUP_SECONDS);

  const runs = new Map<Scenario, LoadResult[]>(scenarios.map((s) => [s, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? scenarios : [...scenarios].reverse();
    for (const scenario of order) {
      const result = await load(scenario, durationSeconds, { measureCpu: true });
      runs.get(scenario)!.push(result);
      progress(
        `round ${round + 1}/${rounds} ${scenario.name}: ${Math.round(result.rps)} rps, ` +
          `p99 ${result.p99.toFixed(3)} ms`,
      );
    }
  }
  const summaries = scenarios.map((s) => summarise(s, runs.get(s)!));
  scenarios.forEach((scenario, i) => {
    const { statuses, errors, timeouts } = summaries[i]!;
    const total = Object.values(statuses).reduce((sum, n) => sum + n, 0);
    const expected = steadyStatus.get(scenario)!;
    const other = total - (statuses[expected] ?? 0);
    if (other > 0 || errors > 0 || timeouts > 0) {
      notes.push(
        `${scenario.name}: ${other} of ${total} answers were not ${expected}, ` +
          `${errors} connection errors, ${timeouts} timeouts; its rps is not that of ${expected}s alone.`,
      );
    }
  });

  const passthrough = scenarios[0]!;
  const hot = scenarios[1]!;
  const rate = Math.max(1, Math.round(LATENCY_LOAD_FRACTION * summaries[0]!.rps));
  const fixed = new Map<Scenario, LoadResult[]>([
    [passthrough, []],
    [hot, []],
  ]);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [passthrough, hot] : [hot, passthrough];
    for (const scenario of order) {
      const result = await runLoad({
        url: scenario.url,
        headers: scenario.headers,
        connections: LATENCY_CONNECTIONS,
        durationSeconds,
        overallRate: rate,
      });
      fixed.get(scenario)!.push(result);
      progress(
        `round ${round + 1}/${rounds} ${scenario.name} at ${rate} rps: ` +
          `${Math.round(result.rps)} rps, p99 ${result.p99.toFixed(3)} ms`,
      );
    }
  }
  const fixedPassthrough = pooled(fixed.get(passthrough)!);
  const fixedHot = pooled(fixed.get(hot)!);
  const latency: FixedRateLatency = {
    rate,
    connections: LATENCY_CONNECTIONS,
    passthrough: fixedPassthrough,
    hot: fixedHot,
    hotAddedP99: fixedHot.p99 - fixedPassthrough.p99,
  };
  if (fixedHot.rps < 0.95 * rate || fixedPassthrough.rps < 0.95 * rate) {
    notes.push(
      `the fixed-rate runs did not reach ${rate} rps on one connection; their latencies are ` +
        "those of back-to-back requests.",
    );
  }

  let pairs: PairResult[] = [];
  if (allKnown) {
    // each scenario's workerd process; the twin's scenarios are measured side by side only
    const pidOf = new Map<Scenario, number>();
    const groups: [Scenario[], number][] = [
      [onA, pids.a!],
      [keygateScenarios(a2, seeded2), pids.a2!],
      [onB, pids.b!],
      [onPeers, pids.peers!],
    ];
    for (const [group, pid] of groups) for (const scenario of group) pidOf.set(scenario, pid);
    /**
     * Where a scenario can be measured: on its instance and, for A's, on the twin. B's
     * passthrough is A's Worker and route (CACHE_TTL_SECONDS plays no part in it), so A's and
     * the twin's stand in for it: cold cannot run beside its own instance's passthrough.
     */
    const sidesOf = (name: ScenarioName): Side[] =>
      [...pidOf]
        .filter(
          ([s]) => s.name === name || (name === "cold_passthrough" && s.name === "passthrough"),
        )
        .map(([s, pid]) => ({ url: s.url, headers: s.headers, pid }));
    // every numerator side against every denominator side in another process: A against the
    // twin and the twin against A, so a difference between the two processes cancels
    const specs: PairSpec[] = RATIOS.map((ratio) => ({
      name: ratio.name,
      rounds: sideBySideOf(ratio).roundsPerRound * options.rounds,
      seconds: sideBySideOf(ratio).seconds,
      arrangements: sidesOf(ratio.numerator).flatMap((numerator) =>
        sidesOf(ratio.denominator)
          .filter((denominator) => denominator.pid !== numerator.pid)
          .map((denominator) => ({ numerator, denominator })),
      ),
    }));
    progress(
      `side by side: ${specs
        .map((spec) => `${spec.name} ${spec.rounds} x ${spec.seconds} s`)
        .join(", ")}`,
    );
    pairs = await measurePairs(specs, { connections }, progress);
  } else {
    notes.push(
      "the workerd processes were not found in /proc: the ratios are those of the sequential runs.",
    );
  }

  const cpuList = cpus();
  return {
    command: commandLine(argv),
    machine:
      `${cpuList[0]?.model.trim() ?? "unknown CPU"}, ${availableParallelism()} cores ` +
      `(${cpuList.length} CPUs), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
      `${platform()} ${release()} ${arch()}`,
    software:
      `Node ${process.version}, miniflare ${versionOf("miniflare")} (workerd), ` +
      `autocannon ${versionOf("autocannon")}, hono ${versionOf("hono")}, ` +
      `@cloudflare/workers-oauth-provider ${versionOf("@cloudflare/workers-oauth-provider")}`,
    settings:
      `${rounds} round(s) x ${durationSeconds} s per scenario, ${connections} connections, ` +
      `pipelining 1, order reversed every other round, medians over rounds`,
    setup: [
      "A: Keygate, ROUTE_RULES /public/* public, CACHE_TTL_SECONDS default (10), echo origin",
      "B: the same with CACHE_TTL_SECONDS=0 (cold: one KV read per request)",
      "peers: hono/bearer-auth (static token) and workers-oauth-provider (its own access token)",
    ],
    scenarios: summaries,
    pairs,
    pinning,
    placeholders: {},
    latency,
    notes,
  };
}

/** Runs the benchmark; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(`${String(error instanceof Error ? error.message : error)}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  if (options.coldStart) return coldStart(options.starts, options.json);
  if (options.profile !== null) {
    return profileScenario(options.profile, options.durationSeconds, options.connections);
  }

  const instances: Instances = {};
  const stopAll = async () => {
    const all = [instances.a, instances.a2, instances.b, instances.peers];
    instances.a = instances.a2 = instances.b = instances.peers = undefined;
    await Promise.all(
      all.map((instance) =>
        instance
          ? withTimeout("stopping a server", instance.stop(), STOP_TIMEOUT_MS).catch((error) =>
              console.error(`bench: ${String(error)}`),
            )
          : undefined,
      ),
    );
  };

  // Hard bound on the whole run: the load runs' total plus the set-up budget.
  const loadSeconds =
    9 * WARMUP_SECONDS +
    (9 + 2) * options.rounds * (options.durationSeconds + 1) +
    RATIOS.reduce((sum, ratio) => {
      const { roundsPerRound, seconds } = sideBySideOf(ratio);
      const warmUp = 2 * (PAIR_WARMUP_SECONDS + 1);
      return sum + warmUp + roundsPerRound * options.rounds * (seconds + 1);
    }, 0);
  const budgetMs = (loadSeconds * 1.5 + SETUP_BUDGET_SECONDS) * 1000;
  const watchdog = setTimeout(() => {
    console.error(`bench: no result after ${Math.round(budgetMs / 1000)} s, giving up`);
    void stopAll().finally(() => process.exit(1));
  }, budgetMs);
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}, stopping the servers`);
    void stopAll().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  let report: Report;
  try {
    report = await measure(options, argv, instances);
  } finally {
    progress("stopping the servers");
    await stopAll();
    clearTimeout(watchdog);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  console.log(formatReport(report));
  if (options.json) console.log(JSON.stringify(toJson(report)));
  return 0;
}
