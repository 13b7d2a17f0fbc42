import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  managementApi,
  request,
  sleep,
  startOrigin,
  waitFor,
  type Json,
  type Origin,
} from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * End to end: the Worker in miniflare (workerd) on a loopback port, a real Node origin behind
 * it, and concurrent clients driving a full key rotation over HTTP with no failed request.
 */

const ROUTE_RULES = [
  { path: "/public/*", public: true },
  { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
];

const CLIENTS = 4;
/** Hard bounds of every client loop. */
const MAX_REQUESTS_PER_CLIENT = 2_000;
const MAX_LOOP_MS = 40_000;
/** Pause between two requests of one client. */
const PACE_MS = 3;
/** Requests each phase waits for, per client. */
const PER_PHASE = 8;

interface Sample {
  client: number;
  tag: string;
  /** the key version of the secret the client sent */
  version: number;
  startedAt: number;
  endedAt: number;
  status: number;
  code: string | null;
  deprecation: string | null;
  sunset: string | null;
  error: string | null;
}

class Client {
  readonly samples: Sample[] = [];
  secret: string;
  version = 1;
  stopped = false;
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly id: number,
    readonly baseUrl: string,
    secret: string,
    /** clients alternate between the two credential headers */
    readonly header: "authorization" | "x-api-key",
  ) {
    this.secret = secret;
  }

  start(): void {
    this.done = this.#loop();
  }

  switchTo(secret: string, version: number): void {
    this.secret = secret;
    this.version = version;
  }

  count(predicate: (s: Sample) => boolean): number {
    return this.samples.filter(predicate).length;
  }

  async #loop(): Promise<void> {
    const deadline = performance.now() + MAX_LOOP_MS;
    for (let seq = 0; seq < MAX_REQUESTS_PER_CLIENT; seq++) {
      if (this.stopped || performance.now() > deadline) return;
      const { secret, version } = this;
      const tag = `c${this.id}-${seq}`;
      const credential: Record<string, string> =
        this.header === "authorization"
          ? { Authorization: `Bearer ${secret}` }
          : { "X-API-Key": secret };
      const startedAt = performance.now();
      const sample: Sample = {
        client: this.id,
        tag,
        version,
        startedAt,
        endedAt: startedAt,
        status: 0,
        code: null,
        deprecation: null,
        sunset: null,
        error: null,
      };
      try {
        const response = await fetch(`${this.baseUrl}/prices/eur`, {
          headers: {
            ...credential,
            "X-E2E-Tag": tag,
            // spoofed identity: Keygate must strip every client-sent X-Keygate-* header
            "X-Keygate-Consumer": "cons_spoofed",
            "X-Keygate-Key-Version": "99",
          },
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await response.json()) as Json;
        sample.status = response.status;
        sample.code = typeof body.code === "string" ? body.code : null;
        sample.deprecation = response.headers.get("deprecation");
        sample.sunset = response.headers.get("sunset");
      } catch (error) {
        sample.error = String(error);
      }
      sample.endedAt = performance.now();
      this.samples.push(sample);
      await sleep(PACE_MS);
    }
  }
}

let origin: Origin;
let keygate: Keygate;
let api: ReturnType<typeof managementApi>;
/** Durations (ms) and counts, printed after the suite. */
const stats: Record<string, number> = {};

beforeAll(async () => {
  const t0 = performance.now();
  origin = await startOrigin();
  keygate = await startKeygate({ originUrl: origin.url, routeRules: ROUTE_RULES });
  api = managementApi(keygate.url, keygate.adminToken);
  stats.startup = Math.round(performance.now() - t0);
});

afterAll(async () => {
  await keygate?.stop();
  await origin?.close();
  console.info(`e2e stats: ${JSON.stringify(stats)}`);
});

async function issueKey(
  scopes: string[],
): Promise<{ consumerId: string; keyId: string; key: string }> {
  const consumer = await api.post("/consumers", { name: "Acme e2e" });
  expect(consumer.status, JSON.stringify(consumer.body)).toBe(201);
  const consumerId = consumer.body.id as string;
  const created = await api.post(`/consumers/${consumerId}/keys`, { name: "prices", scopes });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  expect(created.body.version).toBe(1);
  return { consumerId, keyId: created.body.id as string, key: created.body.key as string };
}

interface UsageView {
  state: string;
  old: { requests: number };
  new: { requests: number };
}

/** The rotation's state and usage (the Worker flushes its own usage batch before reading). */
async function rotationUsage(rotationId: string): Promise<UsageView> {
  const got = await api.get(`/rotations/${rotationId}`);
  expect(got.status, JSON.stringify(got.body)).toBe(200);
  expect(got.body.state).toBe("in_progress");
  const usage = got.body.usage as Omit<UsageView, "state">;
  return { state: got.body.state as string, ...usage };
}

describe("Keygate in miniflare, over real HTTP", () => {
  it("serves its health endpoint", async () => {
    const health = await request(keygate.url, "GET", "/_keygate/health");
    expect(health.status).toBe(200);
    expect(health.body.status).toBe("ok");
  });

  it("rotates a key under concurrent traffic with no failed request", async () => {
    const t0 = performance.now();
    const { consumerId, keyId, key: oldSecret } = await issueKey(["prices:read"]);
    const seenBefore = origin.seen.length;

    const clients = Array.from(
      { length: CLIENTS },
      (_, i) => new Client(i, keygate.url, oldSecret, i % 2 === 0 ? "authorization" : "x-api-key"),
    );
    for (const client of clients) client.start();
    try {
      // phase 1: everyone on the old secret, before any rotation
      await waitFor("traffic on version 1", () =>
        clients.every((c) => c.count((s) => s.status === 200) >= PER_PHASE) ? true : undefined,
      );
      expect(clients.flatMap((c) => c.samples).every((s) => s.deprecation === null)).toBe(true);

      // phase 2: rotate with a one-hour grace window
      const rotateStarted = performance.now();
      const rotated = await api.post(`/keys/${keyId}/rotate`, { gracePeriodSeconds: 3600 });
      const rotatedAt = performance.now();
      stats.rotateCall = Math.round(rotatedAt - rotateStarted);
      expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
      const newSecret = rotated.body.key as string;
      const rotation = rotated.body.rotation as Json;
      expect(rotated.body.id).toBe(keyId);
      expect(rotated.body.version).toBe(2);
      expect(newSecret).not.toBe(oldSecret);
      expect(rotation).toMatchObject({ state: "in_progress", fromVersion: 1, toVersion: 2 });
      const rotationId = rotation.id as string;
      const graceUntil = Date.parse(rotation.graceUntil as string);
      const startedAt = Date.parse(rotation.startedAt as string);
      expect(graceUntil - startedAt).toBe(3600 * 1000);
      const expectedSunset = new Date(graceUntil).toUTCString();
      const expectedDeprecation = `@${Math.floor(startedAt / 1000)}`;

      // phase 3: the old secret keeps working, now with Deprecation and Sunset
      await waitFor("deprecated traffic on version 1", () =>
        clients.every(
          (c) => c.count((s) => s.startedAt > rotatedAt && s.deprecation !== null) >= PER_PHASE,
        )
          ? true
          : undefined,
      );

      // phase 4: clients switch to the new secret one by one, at different times
      const switchedAt: number[] = [];
      const usageSnapshots: UsageView[] = [];
      for (const [i, client] of clients.entries()) {
        client.switchTo(newSecret, 2);
        switchedAt[i] = performance.now();
        await waitFor(`client ${i} on version 2`, () =>
          client.count((s) => s.version === 2 && s.status === 200) >= PER_PHASE ? true : undefined,
        );
        if (i === 0) {
          // mid-way: both versions in use, and the rotation shows it
          const got = await waitFor("usage of both versions", async () => {
            const u = await rotationUsage(rotationId);
            return u.old.requests > 0 && u.new.requests > 0 ? u : undefined;
          });
          expect(clients.slice(1).every((c) => c.version === 1)).toBe(true);
          usageSnapshots.push(got);
        }
        if (i === CLIENTS - 2) {
          // the last client is still on the old secret: both counters keep moving
          expect(clients.at(-1)!.version).toBe(1);
          usageSnapshots.push(await rotationUsage(rotationId));
          const [first, second] = usageSnapshots as [UsageView, UsageView];
          expect(second.old.requests).toBeGreaterThan(first.old.requests);
          expect(second.new.requests).toBeGreaterThan(first.new.requests);
        }
        await sleep(100 + 75 * i);
      }

      // a little more traffic on the new secret from everyone, then stop the loops
      await waitFor("everyone on version 2", () =>
        clients.every(
          (c, i) => c.count((s) => s.startedAt > switchedAt[i]! && s.status === 200) >= PER_PHASE,
        )
          ? true
          : undefined,
      );
      for (const client of clients) client.stopped = true;
      await Promise.all(clients.map((c) => c.done));
      stats.traffic = Math.round(performance.now() - t0);

      const samples = clients.flatMap((c) => c.samples);
      stats.requests = samples.length;

      // NO failed request, from any client, at any moment of the rotation
      const failures = samples.filter((s) => s.status !== 200 || s.error !== null);
      expect(failures, JSON.stringify(failures.slice(0, 5))).toEqual([]);
      for (const client of clients) {
        expect(client.samples.length).toBeLessThan(MAX_REQUESTS_PER_CLIENT);
        expect(client.count((s) => s.version === 1)).toBeGreaterThan(0);
        expect(client.count((s) => s.version === 2)).toBeGreaterThan(0);
      }

      // in-band signals: the old secret after the rotation is deprecated, the new one is not
      const oldAfter = samples.filter((s) => s.version === 1 && s.startedAt > rotatedAt);
      const oldBefore = samples.filter((s) => s.version === 1 && s.endedAt < rotateStarted);
      const fresh = samples.filter((s) => s.version === 2);
      expect(oldAfter.length).toBeGreaterThanOrEqual(CLIENTS * PER_PHASE);
      for (const s of oldAfter) {
        expect(s.deprecation, s.tag).toBe(expectedDeprecation);
        expect(s.sunset, s.tag).toBe(expectedSunset);
      }
      for (const s of [...oldBefore, ...fresh]) {
        expect(s.deprecation, s.tag).toBeNull();
        expect(s.sunset, s.tag).toBeNull();
      }

      // the origin: identity headers in, credentials and spoofed identity out
      const seen = new Map(
        origin.seen
          .slice(seenBefore)
          .map((r) => [r.headers["x-e2e-tag"] as string | undefined, r] as const),
      );
      for (const s of samples) {
        const got = seen.get(s.tag);
        expect(got, `origin never saw ${s.tag}`).toBeDefined();
        const h = got!.headers;
        expect(got!.url).toBe("/prices/eur");
        expect(h.authorization, s.tag).toBeUndefined();
        expect(h["x-api-key"], s.tag).toBeUndefined();
        expect(h["x-keygate-consumer"], s.tag).toBe(consumerId);
        expect(h["x-keygate-key"], s.tag).toBe(keyId);
        expect(h["x-keygate-key-version"], s.tag).toBe(String(s.version));
        expect(h["x-keygate-scopes"], s.tag).toBe("prices:read");
      }
      const leaked = origin.seen.filter(
        (r) =>
          JSON.stringify(r.headers).includes(oldSecret) ||
          JSON.stringify(r.headers).includes(newSecret) ||
          r.url.includes(oldSecret) ||
          r.url.includes(newSecret),
      );
      expect(leaked).toEqual([]);

      // usage: every request on the new version counted; the old one's since the rotation
      await sleep(1_200); // let any in-flight batch reach the coordinator
      const during = await api.get(`/rotations/${rotationId}`);
      expect(during.status).toBe(200);
      expect(during.body.state).toBe("in_progress");
      const usage = during.body.usage as { old: { requests: number }; new: { requests: number } };
      stats.oldRequests = samples.length - fresh.length;
      stats.oldDeprecated = oldAfter.length;
      stats.newRequests = fresh.length;
      stats.usageOld = usage.old.requests;
      stats.usageNew = usage.new.requests;
      expect(usage.new.requests).toBe(fresh.length);
      const oldTotal = samples.filter((s) => s.version === 1).length;
      expect(usage.old.requests).toBeGreaterThanOrEqual(oldAfter.length);
      expect(usage.old.requests).toBeLessThanOrEqual(oldTotal);

      const keyDuring = await api.get(`/keys/${keyId}`);
      expect(keyDuring.status).toBe(200);
      const versions = keyDuring.body.versions as { version: number; status: string }[];
      expect(versions.map((v) => [v.version, v.status])).toEqual([
        [2, "active"],
        [1, "grace"],
      ]);

      // complete: the old secret is refused at once, the new one keeps working
      const completeStarted = performance.now();
      const completed = await api.post(`/rotations/${rotationId}/complete`);
      stats.completeCall = Math.round(performance.now() - completeStarted);
      expect(completed.status, JSON.stringify(completed.body)).toBe(200);
      expect(completed.body.state).toBe("completed");

      const seenBeforeRefusal = origin.seen.length;
      for (const header of ["authorization", "x-api-key"] as const) {
        const credential: Record<string, string> =
          header === "authorization"
            ? { Authorization: `Bearer ${oldSecret}` }
            : { "X-API-Key": oldSecret };
        const refused = await request(keygate.url, "GET", "/prices/eur", { headers: credential });
        expect(refused.status, JSON.stringify(refused.body)).toBe(401);
        expect(refused.body.code).toBe("key_expired");
        expect(refused.headers.get("content-type")).toMatch(/^application\/problem\+json/);
        expect(refused.headers.get("www-authenticate")).toContain('error="invalid_token"');
      }
      expect(origin.seen.length).toBe(seenBeforeRefusal);

      const accepted = await request(keygate.url, "GET", "/prices/eur", {
        headers: { Authorization: `Bearer ${newSecret}` },
      });
      expect(accepted.status).toBe(200);
      expect(accepted.body.keyVersion).toBe("2");
      expect(accepted.headers.get("deprecation")).toBeNull();
      expect(accepted.headers.get("sunset")).toBeNull();

      const after = await api.get(`/rotations/${rotationId}`);
      expect(after.status).toBe(200);
      expect(after.body.state).toBe("completed");
      const keyAfter = await api.get(`/keys/${keyId}`);
      const versionsAfter = keyAfter.body.versions as { version: number; status: string }[];
      expect(versionsAfter.find((v) => v.version === 2)?.status).toBe("active");
      expect(versionsAfter.find((v) => v.version === 1)?.status).toBe("expired");
      stats.rotationTest = Math.round(performance.now() - t0);
    } finally {
      for (const client of clients) client.stopped = true;
      await Promise.all(clients.map((c) => c.done));
    }
  });

  it("proxies a public route without a key, stripping credentials and spoofed identity", async () => {
    const before = origin.seen.length;
    const anonymous = await request(keygate.url, "GET", "/public/status?x=1", {
      headers: { "X-Keygate-Consumer": "cons_spoofed" },
    });
    expect(anonymous.status, JSON.stringify(anonymous.body)).toBe(200);
    expect(anonymous.body).toMatchObject({ origin: "e2e", url: "/public/status?x=1" });
    const reached = origin.seen.slice(before);
    expect(reached).toHaveLength(1);
    expect(reached[0]!.headers["x-keygate-consumer"]).toBeUndefined();
    expect(reached[0]!.headers["x-keygate-key"]).toBeUndefined();

    const withHeader = await request(keygate.url, "GET", "/public/status", {
      headers: { Authorization: "Bearer not-a-key", "X-API-Key": "not-a-key" },
    });
    expect(withHeader.status).toBe(200);
    const last = origin.seen.at(-1)!;
    expect(last.headers.authorization).toBeUndefined();
    expect(last.headers["x-api-key"]).toBeUndefined();
  });

  it("refuses a credential in the query string and never proxies it", async () => {
    const { key } = await issueKey(["prices:read"]);
    const before = origin.seen.length;
    for (const param of ["api_key", "apikey", "key", "access_token", "token", "API_KEY"]) {
      const refused = await request(keygate.url, "GET", `/prices/eur?${param}=${key}`, {
        headers: { Authorization: `Bearer ${key}` },
      });
      expect(refused.status, param).toBe(400);
      expect(refused.body.code, param).toBe("credential_in_url");
      expect(refused.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      const onPublic = await request(keygate.url, "GET", `/public/x?${param}=${key}`);
      expect(onPublic.status, param).toBe(400);
      expect(onPublic.body.code, param).toBe("credential_in_url");
    }
    expect(origin.seen.length).toBe(before);
    expect(origin.seen.some((r) => r.url.includes(key))).toBe(false);

    const ok = await request(keygate.url, "GET", "/prices/eur", {
      headers: { Authorization: `Bearer ${key}` },
    });
    expect(ok.status).toBe(200);
  });
});
