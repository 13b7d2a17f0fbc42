import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateSecret } from "../../src/keys/key-format.js";
import { freePort } from "../e2e/support/http.js";
import { ROOT } from "../e2e/support/worker.js";
import {
  canBindLoopbackAliases,
  Client,
  freshAddress,
  poolAddress,
  type AddressMode,
  type Outcome,
} from "./client.js";
import { judge, type Presented } from "./judge.js";
import { bundleKeygate, openLog, startServer, type LocalServer } from "./local-server.js";
import { expectationOf, secretsByExpectation, type KeyModel } from "./model.js";
import { Operator, type Population } from "./operations.js";
import { parseOptions, USAGE, type SoakOptions } from "./options.js";
import { pick, randomPause, sleep, Slots } from "./slots.js";
import { formatReport, Tally } from "./tally.js";

export { serve } from "./server.js";

/**
 * `npm run soak`: rotation correctness under churn (issue 11, item 7).
 *
 * Keygate runs locally (server.ts: miniflare, own port, own persistence folder, echo origin,
 * one strict route). The soak creates consumers and keys, then for `--seconds`:
 *
 * - every key gets random operations one at a time (its lock: `KeyModel.seq` is odd while
 *   one is in flight), all keys concurrently: rotate with a grace of an hour or more, rotate
 *   with the grace starting on first use, emergency rotate, complete, roll back, extend,
 *   rotate while a rotation is open (must be 409), and rarely revoke, after which a new key
 *   takes the revoked one's place;
 * - traffic runs on every key from the key's own client addresses: its valid secrets, its
 *   retired ones (bots behind the same NAT still on the old secret), secrets of revoked keys,
 *   and garbage;
 * - at half time the server is stopped with SIGTERM and started again on the same state;
 *   right after, a sweep checks every secret ever issued.
 *
 * A request is judged when it was sent while no operation was in flight on its key, at least
 * `--settle-ms` after the last operation's answer on that key (contract §5: a change shows at
 * once on the instance that made it, and locally there is one), and no operation started
 * before its answer came; requests spanning the restart are not judged. Whatever the key's
 * state, no answer may be a 5xx. The sweeps send each request from an address of its own,
 * so that they check the stored state and nothing of the spraying guard's memory.
 */
export async function main(argv: string[], bundleUrl: string): Promise<number> {
  let options: SoakOptions;
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    console.error(USAGE);
    return 2;
  }
  if (options.help) {
    console.info(USAGE);
    return 0;
  }
  const dir = await mkdtemp(join(tmpdir(), "keygate-soak-"));
  const log = openLog(dir);
  let server: LocalServer | undefined;
  try {
    return await soak(options, dir, bundleUrl, log, (s) => (server = s));
  } finally {
    await server?.stop();
    log.end();
    if (options.keep) console.info(`kept ${dir} (worker bundle, state, server.log)`);
    else await rm(dir, { recursive: true, force: true });
  }
}

interface RunState {
  /** bumped when the restart window opens and when it closes */
  epoch: number;
  restarting: boolean;
  opsPaused: boolean;
  opsInFlight: number;
  opsDone: boolean;
  trafficDone: boolean;
  /** secrets that verified on the server now running, and their keys (cleared at the restart) */
  seenOk: Set<string>;
  seenKeys: Set<string>;
  /** when the running server started serving (epoch ms) */
  serverStartedAt: number;
}

const MANAGEMENT_SLOTS = 4;

async function soak(
  options: SoakOptions,
  dir: string,
  bundleUrl: string,
  log: ReturnType<typeof openLog>,
  track: (server: LocalServer) => void,
): Promise<number> {
  const adminToken = `kgadmin_soak_${randomBytes(18).toString("base64url")}`;
  const port = await freePort();
  const setupStarted = Date.now();
  const revision = describeRevision(options.worker);
  await bundleKeygate(dir, options.worker);
  let server = await startServer(bundleUrl, dir, port, adminToken, true, log);
  const serverStartedAt = Date.now();
  track(server);
  const mode: AddressMode =
    options.clientIp === "auto"
      ? (await canBindLoopbackAliases(server.url))
        ? "socket"
        : "header"
      : options.clientIp;
  const client = new Client(server.url, mode);
  const slots = new Slots(MANAGEMENT_SLOTS);
  const tally = new Tally(Date.now());
  const operator = new Operator(client, adminToken, tally, slots, options.graceSeconds);

  const consumers: string[] = [];
  for (let i = 0; i < options.consumers; i++) {
    consumers.push(await operator.createConsumer(`soak-${i + 1}`));
  }
  const population: Population = { live: [], graveyard: [] };
  const created = await Promise.all(
    Array.from({ length: options.keys }, (_, i) =>
      operator.createKey(consumers[i % consumers.length]!, keyAddresses(options.addresses)),
    ),
  );
  for (const key of created) {
    if (!key) throw new Error("creating the keys failed; see the violations");
  }
  population.live = created as KeyModel[];
  const setupMs = Date.now() - setupStarted;

  // examples' times count from the start of the churn
  tally.startedAt = Date.now();

  const state: RunState = {
    epoch: 0,
    restarting: false,
    opsPaused: false,
    opsInFlight: 0,
    opsDone: false,
    trafficDone: false,
    seenOk: new Set(),
    seenKeys: new Set(),
    serverStartedAt: serverStartedAt,
  };
  let interrupted = false;
  const onInterrupt = () => (interrupted = true);
  process.once("SIGINT", onInterrupt);

  const opLoops = population.live.map((_, index) =>
    (async () => {
      while (!state.opsDone) {
        const wake = Date.now() + randomPause(options.opIntervalMs);
        while (!state.opsDone && (Date.now() < wake || state.opsPaused)) await sleep(20);
        if (state.opsDone) break;
        state.opsInFlight++;
        try {
          await operator.operate(population, index);
        } finally {
          state.opsInFlight--;
        }
      }
    })(),
  );
  const workers = Array.from({ length: options.concurrency - MANAGEMENT_SLOTS }, () =>
    trafficWorker(client, population, state, tally, options),
  );

  // half the churn, the restart (not counted in --seconds), the other half
  const churnStarted = Date.now();
  const halfMs = (options.seconds * 1000) / 2;
  const restartAt = churnStarted + halfMs;
  let restartMs = 0;
  const waitUntil = async (at: number) => {
    while (!interrupted && Date.now() < at) await sleep(50);
  };

  await waitUntil(restartAt);
  const restart: string[] = [];
  if (!interrupted) {
    // the restart window: no operations, no judged traffic
    state.restarting = true;
    state.epoch++;
    state.opsPaused = true;
    while (state.opsInFlight > 0) await sleep(10);
    const stopping = Date.now();
    const how = await server.stop();
    const stoppedMs = Date.now() - stopping;
    state.seenOk.clear();
    state.seenKeys.clear();
    const starting = Date.now();
    server = await startServer(bundleUrl, dir, port, adminToken, false, log);
    state.serverStartedAt = Date.now();
    track(server);
    const startedMs = Date.now() - starting;
    const swept = await sweep(client, population, tally, slots, "after restart");
    restart.push(
      `restart at t=${((stopping - churnStarted) / 1000).toFixed(1)}s: SIGTERM → exit (${how}) in ${stoppedMs} ms, ` +
        `serving again in ${startedMs} ms; sweep of ${swept} secrets right after`,
    );
    state.epoch++;
    state.restarting = false;
    state.opsPaused = false;
    restartMs = Date.now() - stopping;
  }

  await waitUntil(restartAt + restartMs + halfMs);
  state.opsDone = true;
  await Promise.all(opLoops);
  state.trafficDone = true;
  await Promise.all(workers);
  const churnMs = Date.now() - churnStarted;
  await sleep(options.settleMs);
  const finalSwept = await sweep(client, population, tally, slots, "final sweep");
  process.removeListener("SIGINT", onInterrupt);
  client.close();

  const secrets = [...population.live, ...population.graveyard].reduce(
    (n, key) => n + key.versions.size,
    0,
  );
  const unknown = [...population.live, ...population.graveyard].filter((k) => k.unknown);
  const facts = [
    `keygate soak: ${options.seconds} s of churn${interrupted ? " (interrupted)" : ""}, ${options.consumers} consumers, ${options.keys} keys (${population.graveyard.length} revoked and replaced), ${secrets} secrets issued`,
    `worker: ${revision}`,
    `server: miniflare on ${server.url}, persistence in ${dir}/state, echo origin, route /strict/* strict; set-up ${setupMs} ms`,
    `client addresses: ${options.addresses} (${mode === "socket" ? "sockets bound to 127.77.0.x; miniflare sets CF-Connecting-IP from the peer address" : "CF-Connecting-IP sent by the client from 127.0.0.1; miniflare passes it through"}); sweeps use a fresh address per request`,
    `concurrency ${options.concurrency} (${options.concurrency - MANAGEMENT_SLOTS} traffic, ${MANAGEMENT_SLOTS} management/sweep), op interval ~${options.opIntervalMs} ms per key, settle ${options.settleMs} ms`,
    `traffic: ${tally.requests} requests in ${(churnMs / 1000).toFixed(1)} s, the restart window's ${(restartMs / 1000).toFixed(1)} s included (${Math.round(tally.requests / (churnMs / 1000))}/s); final sweep of ${finalSwept} secrets`,
    ...restart,
    ...(unknown.length > 0
      ? [
          `keys no longer judged (model lost track): ${unknown.map((k) => `${k.id} (${k.unknown})`).join("; ")}`,
        ]
      : []),
  ];
  if (tally.violations.has("server_error") || tally.violations.has("no_answer")) {
    const text = await readFile(server.logPath, "utf8").catch(() => "");
    const tail = text.trimEnd().split("\n").slice(-15);
    if (tail.length > 0 && tail[0] !== "")
      facts.push("server log, last lines:", ...tail.map((l) => `  ${l}`));
  }
  for (const line of formatReport(tally, facts)) console.info(line);
  return tally.failed > 0 ? 1 : 0;
}

/** Which code the soak runs: the commit and whether src/ has changes beyond it. */
function describeRevision(entry: string | null): string {
  if (entry !== null) return `bundled from ${entry}`;
  const git = (...args: string[]) =>
    spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
  const head = git("rev-parse", "--short", "HEAD");
  if (head === "") return "src/index.ts (not a git checkout)";
  const changed = git("status", "--porcelain", "--", "src").split("\n").filter(Boolean).length;
  return `src/ at ${head}${changed > 0 ? ` plus ${changed} uncommitted file(s) under src/, as they were at start` : ""}`;
}

/** Two distinct addresses of the pool: where this key's clients (old and new secret) sit. */
function keyAddresses(pool: number): string[] {
  const first = Math.floor(Math.random() * pool);
  const second = pool > 1 ? (first + 1 + Math.floor(Math.random() * (pool - 1))) % pool : first;
  return [...new Set([poolAddress(first), poolAddress(second)])];
}

const GARBAGE_SHARE = 0.05;
const GRAVEYARD_SHARE = 0.04;
const STALE_SHARE = 0.2;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

interface Planned {
  presented: Presented;
  /** the credential sent */
  secret: string;
  key: KeyModel | null;
  address: string;
  /** why it cannot be judged, decided when it is sent; null: judge it */
  unjudged: string | null;
}

/** Chooses the next request: which secret, from which address, and whether it can be judged. */
function plan(population: Population, options: SoakOptions, now: number): Planned {
  const r = Math.random();
  if (r < GARBAGE_SHARE) return garbage(population, options);
  let key: KeyModel;
  let stale: boolean;
  if (r < GARBAGE_SHARE + GRAVEYARD_SHARE && population.graveyard.length > 0) {
    key = pick(population.graveyard);
    stale = true;
  } else {
    key = pick(population.live);
    stale = Math.random() < STALE_SHARE;
  }
  const { valid, retired } = secretsByExpectation(key, now);
  const useRetired = retired.length > 0 && (stale || valid.length === 0);
  const secret = useRetired ? pick(retired) : valid.length > 0 ? pick(valid) : null;
  const address = pick(key.addresses);
  if (secret === null) {
    // every version near a deadline: send the current one, unjudged
    const current = key.versions.get(key.current)!;
    return {
      presented: { kind: "valid", secret: current },
      secret: current.secret,
      key,
      address,
      unjudged: "grace deadline near",
    };
  }
  let unjudged: string | null = null;
  if (key.unknown !== null) unjudged = "model lost track of the key";
  else if (key.seq % 2 === 1) unjudged = "operation in flight on the key";
  else if (now < key.settledAt + options.settleMs) unjudged = "within --settle-ms of an answer";
  else if (expectationOf(secret, now) === "unsure") unjudged = "grace deadline near";
  return {
    presented: { kind: useRetired ? "retired" : "valid", secret: { ...secret } },
    secret: secret.secret,
    key,
    address,
    unjudged,
  };
}

/** A garbage credential from a random address of the pool (the same addresses keys use). */
function garbage(population: Population, options: SoakOptions): Planned {
  const key = pick(population.live);
  const address = poolAddress(Math.floor(Math.random() * options.addresses));
  const r = Math.random();
  let secret: string;
  let label: string;
  if (r < 0.4) {
    const real = key.versions.get(key.current)!.secret;
    const last = real.at(-1)!;
    secret = real.slice(0, -1) + BASE62.replace(last, "")[Math.floor(Math.random() * 61)]!;
    label = "bad checksum";
  } else if (r < 0.8) {
    secret = generateSecret("kg", key.id);
    label = "unknown secret, valid checksum";
  } else {
    secret = `kg_${randomBytes(12).toString("hex")}`;
    label = "junk";
  }
  return {
    presented: { kind: "garbage", label, keyId: r < 0.8 ? key.id : null },
    secret,
    key: null,
    address,
    unjudged: null,
  };
}

function credentialHeaders(secret: string): Record<string, string> {
  return Math.random() < 0.7 ? { Authorization: `Bearer ${secret}` } : { "X-API-Key": secret };
}

async function trafficWorker(
  client: Client,
  population: Population,
  state: RunState,
  tally: Tally,
  options: SoakOptions,
): Promise<void> {
  let n = 0;
  while (!state.trafficDone) {
    const sentAt = Date.now();
    const planned = plan(population, options, sentAt);
    const seq = planned.key?.seq ?? 0;
    const epoch = state.epoch;
    const restarting = state.restarting;
    const path = `${Math.random() < 0.2 ? "/strict" : ""}/soak/${n++}`;
    const post = Math.random() < 0.1;
    const outcome: Outcome = await client.send({
      method: post ? "POST" : "GET",
      path,
      address: planned.address,
      headers: credentialHeaders(planned.secret),
      // workerd resets a kept-alive connection after answering a request whose body the
      // Worker did not read (a refusal), with no `Connection: close`: the next request on
      // it gets ECONNRESET. A POST with a body therefore gets a connection of its own.
      ...(post ? { body: { soak: n }, fresh: true } : {}),
    });
    tally.requests++;
    tally.status(
      outcome.ok
        ? `${outcome.answer.status} ${outcome.answer.code ?? ""}`.trim()
        : `no answer (${outcome.error})`,
    );
    const inRestartWindow = restarting || state.restarting || epoch !== state.epoch;
    if (
      outcome.ok &&
      outcome.answer.status >= 200 &&
      outcome.answer.status < 300 &&
      planned.presented.kind !== "garbage"
    ) {
      if (!inRestartWindow) {
        state.seenOk.add(planned.secret);
        state.seenKeys.add(planned.presented.secret.keyId);
      }
    }
    if (inRestartWindow) {
      tally.skip("restart window");
      if (outcome.ok && outcome.answer.status >= 500) {
        tally.note(`${outcome.answer.status} during the restart window (not judged)`);
      }
      if (!outcome.ok) await sleep(100);
      continue;
    }
    let unjudged = planned.unjudged;
    if (unjudged === null && planned.key !== null && planned.key.seq !== seq) {
      unjudged = "operation started before the answer";
    }
    if (unjudged !== null) {
      tally.skip(unjudged);
      // whatever the model knows, never a 5xx
      if (outcome.ok && outcome.answer.status >= 500) {
        judge(tally, {
          phase: epoch === 0 ? "traffic, first half" : "traffic, second half",
          presented: planned.presented,
          address: planned.address,
          outcome,
        });
      }
      continue;
    }
    judge(tally, {
      phase: epoch === 0 ? "traffic, first half" : "traffic, second half",
      presented: planned.presented,
      address: planned.address,
      outcome,
      seen: {
        secret: state.seenOk.has(planned.secret),
        key: planned.key !== null && state.seenKeys.has(planned.key.id),
        createdHere: planned.key !== null && planned.key.createdAt >= state.serverStartedAt,
      },
    });
  }
}

/**
 * Asks about every secret ever issued, on a plain and on the strict route, each request from
 * an address no other request used; returns how many secrets it judged.
 */
async function sweep(
  client: Client,
  population: Population,
  tally: Tally,
  slots: Slots,
  phase: string,
): Promise<number> {
  const now = Date.now();
  const jobs: Promise<void>[] = [];
  let judged = 0;
  for (const key of [...population.live, ...population.graveyard]) {
    if (key.unknown !== null) continue;
    for (const secret of key.versions.values()) {
      const expectation = expectationOf(secret, now);
      if (expectation === "unsure") continue;
      judged++;
      const presented: Presented = { kind: expectation, secret: { ...secret } };
      for (const path of ["/soak/sweep", "/strict/soak/sweep"]) {
        jobs.push(
          slots.run(async () => {
            const address = freshAddress();
            const outcome = await client.send({
              method: "GET",
              path,
              address,
              headers: { Authorization: `Bearer ${secret.secret}` },
              fresh: true,
            });
            judge(tally, { phase, presented, address, outcome });
          }),
        );
      }
    }
  }
  await Promise.all(jobs);
  return judged;
}
