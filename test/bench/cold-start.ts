import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { Miniflare } from "miniflare";
import { bundleForWorkerd, KEYGATE_RESOURCES, ROOT } from "../e2e/support/worker.js";
import { median } from "./load.js";
import { childWorkerdPids, cpuNs } from "./procfs.js";

/**
 * `npm run bench -- --cold-start`: what Keygate adds to a new isolate's start-up, next to a
 * baseline Worker that has the same bindings and Durable Object classes and answers "ok".
 *
 * Every new isolate evaluates the whole script before it answers. Each start here is a fresh
 * Miniflare (a new workerd process, nothing persisted) given one of the two scripts; the two
 * Workers take turns (Keygate, baseline, Keygate, …) so a drift of the machine weighs on both
 * alike, after one unrecorded start of each (the first start of a run also pays for the disk
 * cache and this process's own warm-up). Measured per start:
 *
 * - start → first answer: from `new Miniflare()` to the end of the first response's body;
 * - ready: the part of it until Miniflare reports workerd listening (workerd compiles and
 *   evaluates the script before that);
 * - first and second request: one request's own time on a fresh connection, the first one
 *   being where whatever the script builds lazily is paid for;
 * - CPU time: of the workerd process until ready and during the first request (/proc), and of
 *   this process until ready. On a shared machine the wall times swing with the load of other
 *   processes; CPU times much less. This process's share is Miniflare's, grows with the
 *   script's bytes (it serialises the script into workerd's config), and no deployed Worker
 *   pays it; workerd's share is compiling and evaluating the script.
 *
 * The request is a `GET` of a public route (ROUTE_RULES `/public/*`): it touches no storage,
 * so Keygate's D1 is left without migrations, as a fresh isolate would find nothing in it
 * either. Both scripts are bundled as wrangler bundles a Worker (esbuild, one ES module, no
 * source map). The numbers are information, never a pass/fail.
 */

export const DEFAULT_STARTS = 7;

const PATH = "/public/cold";
const ROUTE_RULES = JSON.stringify([{ path: "/public/*", public: true }]);
const ADMIN_TOKEN = "cold-start-admin-token-0123456789";

/** The baseline: Keygate's exports as stubs, and a fetch handler answering "ok". */
const BASELINE = `import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";
export class KeyCoordinator extends DurableObject {}
export class TokenSigner extends DurableObject {}
export class KeygateService extends WorkerEntrypoint {}
export default { fetch: () => new Response("ok") };
`;

type WorkerName = "keygate" | "baseline";

interface Start {
  /** `new Miniflare()` to the end of the first response, ms. */
  firstAnswer: number;
  ready: number;
  firstRequest: number;
  secondRequest: number;
  /** CPU time of the workerd process until ready, and during the first request, ms. */
  workerdReadyCpu: number;
  workerdFirstRequestCpu: number;
  /** CPU time of this process (Miniflare's side) until ready, ms. */
  nodeReadyCpu: number;
}

interface Script {
  path: string;
  contents: string;
  bytes: number;
  gzipBytes: number;
}

/** One GET on a new connection; resolves with the status once the whole body is read. */
function get(origin: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${origin}${path}`, { agent: false, timeout: 15_000 }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
      res.once("error", reject);
    });
    req.once("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.once("error", reject);
    req.end();
  });
}

async function timed(origin: string): Promise<[number, number]> {
  const before = performance.now();
  const status = await get(origin, PATH);
  return [status, performance.now() - before];
}

async function scriptOf(path: string): Promise<Script> {
  const bytes = await readFile(path);
  return {
    path,
    contents: bytes.toString("utf8"),
    bytes: bytes.length,
    gzipBytes: gzipSync(bytes).length,
  };
}

/** Keeps the Miniflare that is running, so that a signal can stop it. */
let running: Miniflare | undefined;

async function startOnce(dir: string, script: Script): Promise<Start> {
  const nodeCpu = process.cpuUsage();
  const started = performance.now();
  const mf = new Miniflare({
    // the module given whole: from a `scriptPath`, Miniflare would first parse the script in
    // Node to find its imports, which costs a 1.2 MB script about 250 ms that no deployed
    // Worker pays (wrangler hands Miniflare its modules the same way)
    modulesRoot: dir,
    modules: [{ type: "ESModule", path: script.path, contents: script.contents }],
    ...KEYGATE_RESOURCES,
    bindings: { ADMIN_TOKEN, ORIGIN_URL: "", ROUTE_RULES },
    host: "127.0.0.1",
    port: 0,
    // the Workers' console output (only on failures) goes to stderr, never into the report
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      for (const stream of [stdout, stderr]) {
        stream.on("data", (chunk: Buffer) => process.stderr.write(chunk));
      }
    },
  });
  running = mf;
  try {
    const { origin } = await mf.ready;
    const ready = performance.now() - started;
    const { user, system } = process.cpuUsage(nodeCpu);
    const pids = childWorkerdPids();
    if (pids.length !== 1) throw new Error(`expected one workerd process, found ${pids.length}`);
    const pid = pids[0]!;
    const readyCpu = cpuNs(pid);
    const [status, firstRequest] = await timed(origin);
    const firstAnswer = performance.now() - started;
    const firstRequestCpu = cpuNs(pid) - readyCpu;
    const [secondStatus, secondRequest] = await timed(origin);
    if (status !== 200 || secondStatus !== 200) {
      throw new Error(`GET ${PATH} answered ${status}, then ${secondStatus}; expected 200`);
    }
    return {
      firstAnswer,
      ready,
      firstRequest,
      secondRequest,
      workerdReadyCpu: readyCpu / 1e6,
      workerdFirstRequestCpu: firstRequestCpu / 1e6,
      nodeReadyCpu: (user + system) / 1000,
    };
  } finally {
    running = undefined;
    await mf.dispose();
  }
}

const ms = (value: number) => `${value.toFixed(value < 100 ? 1 : 0)} ms`;
const size = (bytes: number) =>
  bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${(bytes / 1024).toFixed(1)} KiB`;

const ROWS: [keyof Start, string][] = [
  ["firstAnswer", "start → first answer"],
  ["ready", "  of which until ready"],
  ["firstRequest", "first request"],
  ["secondRequest", "second request"],
  ["workerdReadyCpu", "workerd CPU until ready"],
  ["workerdFirstRequestCpu", "workerd CPU, first request"],
  ["nodeReadyCpu", "Miniflare (Node) CPU until ready"],
];

function row(field: keyof Start, label: string, keygate: number[], baseline: number[]) {
  const k = median(keygate);
  const b = median(baseline);
  return {
    field,
    keygate: k,
    baseline: b,
    cells: [label, ms(k), ms(b), `${k - b >= 0 ? "+" : ""}${ms(k - b)}`, (k / b).toFixed(2)],
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))))
    .map((r) => r.join("   "))
    .join("\n");
}

/** Runs the cold-start probe; returns the exit code. */
export async function coldStart(starts: number, json: boolean): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-cold-start-"));
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}, stopping workerd`);
    void (running?.dispose() ?? Promise.resolve())
      .finally(() => rm(dir, { recursive: true, force: true }))
      .finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const baselinePath = join(dir, "baseline.js");
    await writeFile(baselinePath, BASELINE);
    const scripts: Record<WorkerName, Script> = {
      keygate: await scriptOf(
        await bundleForWorkerd(join(ROOT, "src/index.ts"), join(dir, "keygate.js")),
      ),
      baseline: await scriptOf(baselinePath),
    };
    const runs: Record<WorkerName, Start[]> = { keygate: [], baseline: [] };
    const order: WorkerName[] = ["keygate", "baseline"];
    for (let i = -1; i < starts; i++) {
      for (const name of order) {
        const start = await startOnce(dir, scripts[name]);
        if (i < 0) continue; // unrecorded warm-up
        runs[name].push(start);
        process.stderr.write(
          `[cold start ${i + 1}/${starts}] ${name}: first answer ${ms(start.firstAnswer)}, ` +
            `first request ${ms(start.firstRequest)}\n`,
        );
      }
    }
    const of = (name: WorkerName, field: keyof Start) => runs[name].map((start) => start[field]);
    const rows = ROWS.map(([field, label]) =>
      row(field, label, of("keygate", field), of("baseline", field)),
    );
    const { keygate, baseline } = scripts;
    console.log(
      [
        `Cold start: a fresh workerd (Miniflare) per start, ${starts} starts of each Worker, ` +
          `interleaved; medians; GET ${PATH} (a public route)`,
        "",
        table([["", "Keygate", "baseline", "difference", "ratio"], ...rows.map((r) => r.cells)]),
        "",
        `script: Keygate ${size(keygate.bytes)} (${size(keygate.gzipBytes)} gzipped), ` +
          `baseline ${size(baseline.bytes)}`,
        'Baseline: the same bindings and Durable Object classes (stubs), answering "ok".',
      ].join("\n"),
    );
    if (json) {
      const medians = (name: WorkerName) => Object.fromEntries(rows.map((r) => [r.field, r[name]]));
      console.log(
        JSON.stringify({
          cold_start_ms: { keygate: medians("keygate"), baseline: medians("baseline") },
          script_bytes: { keygate: keygate.bytes, keygate_gzip: keygate.gzipBytes },
        }),
      );
    }
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await rm(dir, { recursive: true, force: true });
  }
}
