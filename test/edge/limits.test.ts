import { createExecutionContext, env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Limiter } from "../../src/edge/limiter";
import { FAILURE_THRESHOLD } from "../../src/edge/ip-guard";
import { readSecretRecord } from "../../src/store/kv-index";
import { hashSecret } from "../../src/keys/hash";
import { checksumOf } from "../../src/keys/key-format";
import worker from "../../src/index";
import { admin, codeOf, newConsumer, newKey, withKey } from "../support/api";
import { counting } from "../support/faults";

function fromIp(ip: string, secret: string, path = "/x") {
  return SELF.fetch(`https://keygate.test${path}`, {
    headers: { Authorization: `Bearer ${secret}`, "CF-Connecting-IP": ip },
  });
}

describe("rate limits", () => {
  it("admits up to the limit with RateLimit headers, then 429 rate_limited with Retry-After", async () => {
    const { key } = await newKey(["prices:read"], { rateLimit: { limit: 5, periodSeconds: 3600 } });
    const remaining: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await withKey(key);
      expect(res.status).toBe(200);
      expect(res.headers.get("RateLimit-Policy")).toBe('"key";q=5;w=3600');
      remaining.push(Number(/r=(\d+)/.exec(res.headers.get("RateLimit")!)![1]));
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);
    const limited = await withKey(key);
    expect(limited.status).toBe(429);
    expect(await codeOf(limited)).toBe("rate_limited");
    const retryAfter = Number(limited.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(limited.headers.get("RateLimit")).toMatch(/^"key";r=0;t=\d+$/);
  });

  it("applies the consumer's default, and a key's own limit overrides it", async () => {
    const consumer = (
      await admin.post("/consumers", {
        name: "limited",
        rateLimit: { limit: 2, periodSeconds: 60 },
      })
    ).body.id as string;
    const byDefault = await newKey([], {}, consumer);
    const own = await newKey([], { rateLimit: { limit: 4, periodSeconds: 60 } }, consumer);
    expect((await withKey(byDefault.key)).status).toBe(200);
    expect((await withKey(byDefault.key)).status).toBe(200);
    expect((await withKey(byDefault.key)).status).toBe(429);
    for (let i = 0; i < 4; i++) expect((await withKey(own.key)).status).toBe(200);
    expect((await withKey(own.key)).status).toBe(429);
  });

  it("shares one budget between all versions of a key: a rotation never resets it", async () => {
    const issued = await newKey([], { rateLimit: { limit: 5, periodSeconds: 3600 } });
    for (let i = 0; i < 3; i++) expect((await withKey(issued.key)).status).toBe(200);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    const fresh = rotated.body.key as string;
    expect((await withKey(fresh)).status).toBe(200);
    expect((await withKey(issued.key)).status).toBe(200);
    expect((await withKey(fresh)).status).toBe(429);
    expect((await withKey(issued.key)).status).toBe(429);
  });

  it("never charges refused requests: scope failures and 429s consume nothing", async () => {
    const { key } = await newKey(["orders:read"], { rateLimit: { limit: 2, periodSeconds: 3600 } });
    for (let i = 0; i < 5; i++) expect((await withKey(key, "/prices/eur")).status).toBe(403);
    expect((await withKey(key)).status).toBe(200);
    expect((await withKey(key)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await withKey(key)).status).toBe(429);
  });

  it("enforces the consumer's monthly quota across all its keys (quota_exceeded until next month)", async () => {
    const consumer = (await admin.post("/consumers", { name: "quota", monthlyQuota: 3 })).body
      .id as string;
    const a = await newKey([], {}, consumer);
    const b = await newKey([], {}, consumer);
    expect((await withKey(a.key)).status).toBe(200);
    expect((await withKey(b.key)).status).toBe(200);
    const last = await withKey(a.key);
    expect(last.status).toBe(200);
    expect(last.headers.get("RateLimit-Policy")).toMatch(/^"quota";q=3;w=\d+$/);
    const over = await withKey(b.key);
    expect(over.status).toBe(429);
    expect(await codeOf(over)).toBe("quota_exceeded");
    const now = new Date();
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    expect(Number(over.headers.get("Retry-After"))).toBeCloseTo(
      (nextMonth - Date.now()) / 1000,
      -2,
    );
  });

  it("re-projects a consumer's keys when its limits change", async () => {
    const consumer = await newConsumer();
    const issued = await newKey([], {}, consumer);
    expect((await withKey(issued.key)).headers.get("RateLimit")).toBeNull();
    await admin.patch(`/consumers/${consumer}`, { rateLimit: { limit: 1, periodSeconds: 60 } });
    const record = await readSecretRecord(env.KEYS, hashSecret(issued.key));
    expect(record?.rateLimit).toEqual({ limit: 1, periodSeconds: 60 });
  });

  it("reports the limit in POST /verify and refuses once it is used up", async () => {
    const { key } = await newKey([], { rateLimit: { limit: 1, periodSeconds: 60 } });
    const first = await admin.post("/verify", { key });
    expect(first.body).toMatchObject({ valid: true, ratelimit: { policy: '"key";q=1;w=60' } });
    const second = await admin.post("/verify", { key });
    expect(second.body).toMatchObject({ valid: false, code: "rate_limited" });
  });

  it("stays within the limit and reaches at least 95 % of it with many clients over several isolates", async () => {
    const limit = 200;
    const issued = await newKey([], { rateLimit: { limit, periodSeconds: 3600 } });
    const record = (await readSecretRecord(env.KEYS, hashSecret(issued.key)))!;
    const isolates = Array.from({ length: 6 }, () => new Limiter());
    const background: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => background.push(p) };
    let admitted = 0;
    let demand = 2 * limit;
    const clients = Array.from({ length: 40 }, async (_, client) => {
      const isolate = isolates[client % isolates.length]!;
      while (demand > 0) {
        demand--;
        const decision = await isolate.admit(env, ctx, record, Date.now());
        if (decision.ok) admitted++;
      }
    });
    await Promise.all(clients);
    await Promise.all(background);
    expect(admitted).toBeLessThanOrEqual(limit); // documented tolerance: 0 over the limit
    expect(admitted).toBeGreaterThanOrEqual(0.95 * limit);
  });
});

describe("monthly quota across rate windows", () => {
  it("returns budget leased in one rate window and not used to the quota: only requests count", async () => {
    const quota = 1000;
    const consumerId = await newConsumer();
    expect((await admin.patch(`/consumers/${consumerId}`, { monthlyQuota: quota })).status).toBe(
      200,
    );
    // limit 500/s: leases of 10, so each window strands 9 unused in this isolate
    const issued = await newKey([], { rateLimit: { limit: 500, periodSeconds: 1 } }, consumerId);
    const record = (await readSecretRecord(env.KEYS, hashSecret(issued.key)))!;
    const isolate = new Limiter();
    const background: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => background.push(p) };
    const quotaLeft: number[] = [];
    for (let window = 0; window < 3; window++) {
      // one request at the start of each one-second window
      await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
      const decision = await isolate.admit(env, ctx, record, Date.now());
      expect(decision.ok).toBe(true);
      quotaLeft.push(Number(/"quota";r=(\d+)/.exec(decision.headers.RateLimit!)![1]));
      await Promise.all(background);
    }
    expect(quotaLeft).toEqual([quota - 1, quota - 2, quota - 3]);
  });
});

describe("failed credentials never consume a valid key's budget", () => {
  it("unknown secrets naming the key's id and a revoked version cost the key nothing", async () => {
    const limit = 3;
    const issued = await newKey([], { rateLimit: { limit, periodSeconds: 3600 } });
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 0 });
    expect(rotated.status).toBe(201);
    const current = rotated.body.key as string;
    // the revoked old secret, and well-formed secrets (valid checksums) under the same key id
    const keyIdPart = issued.key.slice(0, issued.key.lastIndexOf("_") + 1);
    const forged = Array.from({ length: 5 }, () => {
      const body = keyIdPart + crypto.randomUUID().replaceAll("-", "").slice(0, 32);
      return body + checksumOf(body);
    });
    for (const secret of [issued.key, ...forged]) {
      expect((await fromIp("198.51.100.40", secret)).status).toBe(401);
    }
    for (let i = 0; i < limit; i++) {
      expect((await fromIp("198.51.100.41", current)).status).toBe(200);
    }
    expect((await fromIp("198.51.100.41", current)).status).toBe(429);
  });
});

describe("key spraying", () => {
  it("cuts off an address after repeated invalid keys, before any KV read, without locking out the owner", async () => {
    const owner = await newKey();
    const attacker = "203.0.113.7";
    const other = await newKey();
    expect((await fromIp(attacker, owner.key)).status).toBe(200); // cached as valid here
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      const guess = owner.key.slice(0, -8) + crypto.randomUUID().replaceAll("-", "").slice(0, 8);
      expect((await fromIp(attacker, guess)).status).toBe(401);
    }
    // a key this isolate has not seen (the API that made `other` ran here, so it has) is cut off
    const unseenBody = `kg_zzzzzzzzzzzzzzzz_${"a".repeat(32)}`;
    const blocked = await fromIp(attacker, unseenBody + checksumOf(unseenBody));
    expect(blocked.status).toBe(429);
    expect(await codeOf(blocked)).toBe("rate_limited");
    expect(Number(blocked.headers.get("Retry-After"))).toBeGreaterThan(0);
    // the owner's own key, known valid here, still works from that address and everywhere else
    expect((await fromIp(attacker, owner.key)).status).toBe(200);
    expect((await fromIp("198.51.100.1", other.key)).status).toBe(200);
  });
});

describe("key spraying: storage", () => {
  it("refuses a cut-off address's well-formed guesses with no KV read", async () => {
    const owner = await newKey();
    const kv = counting(env.KEYS);
    const testEnv = { ...env, KEYS: kv.binding };
    const attacker = "203.0.113.77";
    const keyIdPart = owner.key.slice(0, owner.key.lastIndexOf("_") + 1);
    const guess = () => {
      const body = keyIdPart + crypto.randomUUID().replaceAll("-", "").slice(0, 32);
      return body + checksumOf(body); // a valid checksum: only storage can refuse it
    };
    const send = (secret: string) =>
      worker.fetch(
        new Request("https://keygate.test/x", {
          headers: { Authorization: `Bearer ${secret}`, "CF-Connecting-IP": attacker },
        }),
        testEnv,
        createExecutionContext(),
      );
    for (let i = 0; i < FAILURE_THRESHOLD; i++) expect((await send(guess())).status).toBe(401);
    const readsBefore = kv.calls.get ?? 0;
    expect(readsBefore).toBe(FAILURE_THRESHOLD); // each guess cost one read until the cut-off
    for (let i = 0; i < 10; i++) expect((await send(guess())).status).toBe(429);
    expect(kv.calls.get ?? 0).toBe(readsBefore);
  });
});
