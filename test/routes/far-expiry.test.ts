import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { secretKey } from "../../src/store/kv-index";
import { admin, codeOf, newConsumer, newKey, type Json } from "../support/api";
import { expectKvMatchesD1, expectNothingToRetry } from "../faults/harness";

/**
 * An `expiresAt` far in the future (issue 11, finding 2): KV's `expiration` is an int32 of
 * epoch seconds in workerd, so a record kept 30 days past an expiry after 2037-12-20 cannot
 * carry one. Any value the API accepts must still reach the edge, and every later change too.
 */

/** The largest `expiration` workerd's KV binding takes: 2038-01-19T03:14:07Z. */
const KV_MAX_EXPIRATION = 2 ** 31 - 1;
const RETENTION_MS = 30 * 86_400_000;
/** The last expiresAt whose record still gets a KV expiration (2037-12-20T03:14:07Z). */
const CAP_BOUNDARY = KV_MAX_EXPIRATION * 1000 - RETENTION_MS;
const MAX_EXPIRES_AT = "9999-12-31T23:59:59.999Z";

function prices(secret: string): Promise<Response> {
  return SELF.fetch("http://example.com/prices/x", {
    headers: { Authorization: `Bearer ${secret}` },
  });
}

function anywhere(secret: string): Promise<Response> {
  return SELF.fetch("http://example.com/anything", {
    headers: { Authorization: `Bearer ${secret}` },
  });
}

/** The KV `expiration` of a secret's record (undefined: none), and whether there is one. */
async function kvExpiration(secret: string): Promise<{ exists: boolean; expiration?: number }> {
  const name = secretKey(hashSecret(secret));
  const page = await env.KEYS.list({ prefix: name });
  const found = page.keys.find((k) => k.name === name);
  return found ? { exists: true, expiration: found.expiration } : { exists: false };
}

async function createWith(expiresAt: string, consumerId?: string) {
  const consumer = consumerId ?? (await newConsumer("far-expiry"));
  return admin.post(`/consumers/${consumer}/keys`, { scopes: ["prices:read"], expiresAt });
}

describe("an expiresAt past 2038", () => {
  for (const expiresAt of [
    "2040-01-01T00:00:00.000Z",
    "2100-01-01T00:00:00.000Z",
    "9999-12-31T00:00:00.000Z",
  ]) {
    it(`creates a key expiring at ${expiresAt}: 201, and it verifies at the front door`, async () => {
      const created = await createWith(expiresAt);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body.expiresAt).toBe(expiresAt);
      const key = created.body.key as string;
      expect((await prices(key)).status).toBe(200);
      expect(await kvExpiration(key)).toEqual({ exists: true, expiration: undefined });
      expect((await admin.get(`/keys/${created.body.id as string}`)).body.expiresAt).toBe(
        expiresAt,
      );
      await expectKvMatchesD1(created.body.id as string);
    });
  }

  it("a PATCH to 2040 and then of scopes and rate limit: the edge follows the later change", async () => {
    const issued = await newKey(["prices:read"]);
    const far = await admin.patch(`/keys/${issued.id}`, { expiresAt: "2040-01-01T00:00:00Z" });
    expect(far.status).toBe(200);
    expect((await prices(issued.key)).status).toBe(200);
    await expectKvMatchesD1(issued.id);

    const narrowed = await admin.patch(`/keys/${issued.id}`, {
      scopes: ["orders:read"],
      rateLimit: { limit: 1, periodSeconds: 3600 },
    });
    expect(narrowed.status).toBe(200);
    const refused = await prices(issued.key);
    expect(refused.status).toBe(403);
    expect(await codeOf(refused)).toBe("insufficient_scope");
    expect((await anywhere(issued.key)).status).toBe(200);
    const limited = await anywhere(issued.key);
    expect(limited.status).toBe(429);
    expect(await codeOf(limited)).toBe("rate_limited");
    await expectKvMatchesD1(issued.id);
    await expectNothingToRetry(issued.consumerId);
  });

  it("an emergency rotation after a PATCH to 2040 cuts the old secret at once", async () => {
    const issued = await newKey(["prices:read"]);
    expect(
      (await admin.patch(`/keys/${issued.id}`, { expiresAt: "2040-01-01T00:00:00Z" })).status,
    ).toBe(200);
    expect((await prices(issued.key)).status).toBe(200);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 0 });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    const old = await prices(issued.key);
    expect(old.status).toBe(401);
    expect(await codeOf(old)).toBe("invalid_key");
    // its record is now the revoked version's tombstone, kept for the retention period
    const tombstone = await kvExpiration(issued.key);
    expect(tombstone.exists).toBe(true);
    expect(tombstone.expiration).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 31 * 86_400);
    const fresh = rotated.body.key as string;
    expect((await prices(fresh)).status).toBe(200);
    // the new version inherits the old one's lifetime: it too expires after 2038
    expect(Date.parse(rotated.body.expiresAt as string)).toBeGreaterThan(
      Date.parse("2040-01-01T00:00:00Z"),
    );
    await expectKvMatchesD1(issued.id);
    await expectNothingToRetry(issued.consumerId);
  });

  it("a revoke after a PATCH to 2100 cuts the secret at once", async () => {
    const issued = await newKey(["prices:read"]);
    await admin.patch(`/keys/${issued.id}`, { expiresAt: "2100-01-01T00:00:00Z" });
    expect((await prices(issued.key)).status).toBe(200);
    expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
    expect((await prices(issued.key)).status).toBe(401);
    await expectKvMatchesD1(issued.id);
    await expectNothingToRetry(issued.consumerId);
  });
});

describe("expiresAt at the edges", () => {
  it("at the cap boundary the record carries KV's largest expiration; 1 ms later it carries none", async () => {
    const consumer = await newConsumer("edges");
    const at = await createWith(new Date(CAP_BOUNDARY).toISOString(), consumer);
    expect(at.status).toBe(201);
    expect(await kvExpiration(at.body.key as string)).toEqual({
      exists: true,
      expiration: KV_MAX_EXPIRATION,
    });
    expect((await prices(at.body.key as string)).status).toBe(200);

    const past = await createWith(new Date(CAP_BOUNDARY + 1).toISOString(), consumer);
    expect(past.status).toBe(201);
    expect(await kvExpiration(past.body.key as string)).toEqual({
      exists: true,
      expiration: undefined,
    });
    expect((await prices(past.body.key as string)).status).toBe(200);
  });

  it(`accepts ${MAX_EXPIRES_AT}, the latest expiresAt, on create, PATCH and rotate`, async () => {
    const created = await createWith(MAX_EXPIRES_AT);
    expect(created.status).toBe(201);
    expect(created.body.expiresAt).toBe(MAX_EXPIRES_AT);
    expect((await prices(created.body.key as string)).status).toBe(200);
    const id = created.body.id as string;

    const patched = await admin.patch(`/keys/${id}`, { expiresAt: MAX_EXPIRES_AT });
    expect(patched.status).toBe(200);
    const rotated = await admin.post(`/keys/${id}/rotate`, {
      gracePeriodSeconds: 60,
      expiresAt: MAX_EXPIRES_AT,
    });
    expect(rotated.status).toBe(201);
    expect(rotated.body.expiresAt).toBe(MAX_EXPIRES_AT);
    expect((await prices(rotated.body.key as string)).status).toBe(200);
    expect((await prices(created.body.key as string)).status).toBe(200);
    await expectKvMatchesD1(id);
  });

  it("a rotation that inherits a lifetime never takes the new version past the latest expiresAt", async () => {
    const created = await createWith(MAX_EXPIRES_AT);
    const id = created.body.id as string;
    // a lifetime longer than what is left until the maximum
    await env.DB.prepare("UPDATE key_versions SET created_at = ? WHERE key_id = ?")
      .bind(Date.now() - 86_400_000, id)
      .run();
    const rotated = await admin.post(`/keys/${id}/rotate`, { gracePeriodSeconds: 0 });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    expect(rotated.body.expiresAt).toBe(MAX_EXPIRES_AT);
    expect((await prices(rotated.body.key as string)).status).toBe(200);
    expect((await prices(created.body.key as string)).status).toBe(401);
    const read = await admin.get(`/keys/${id}`);
    for (const version of read.body.versions as Json[]) {
      if (version.expiresAt !== null) expect(version.expiresAt).toBe(MAX_EXPIRES_AT);
    }
  });

  for (const tooLate of [
    "9999-12-31T23:59:59.999-00:01", // 10000-01-01T00:00:59.999Z
    "10000-01-01T00:00:00Z",
    "+010000-01-01T00:00:00.000Z",
  ]) {
    it(`refuses expiresAt ${tooLate} with 400 validation_failed on create, PATCH and rotate`, async () => {
      const issued = await newKey(["prices:read"]);
      const created = await createWith(tooLate, issued.consumerId);
      expect(created.status).toBe(400);
      expect(created.body.code).toBe("validation_failed");
      const patched = await admin.patch(`/keys/${issued.id}`, { expiresAt: tooLate });
      expect(patched.status).toBe(400);
      expect(patched.body.code).toBe("validation_failed");
      const rotated = await admin.post(`/keys/${issued.id}/rotate`, { expiresAt: tooLate });
      expect(rotated.status).toBe(400);
      expect(rotated.body.code).toBe("validation_failed");
      expect((await prices(issued.key)).status).toBe(200);
    });
  }
});

describe("a rotation of a key expiring after 2038", () => {
  it("keeps both secrets verifying through a grace that starts on first use, with records KV can hold", async () => {
    const created = await createWith("2100-01-01T00:00:00Z");
    const id = created.body.id as string;
    const old = created.body.key as string;
    const rotated = await admin.post(`/keys/${id}/rotate`, {
      gracePeriodSeconds: 3600,
      graceStartsOnFirstUse: true,
      expiresAt: "2200-01-01T00:00:00Z",
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    const fresh = rotated.body.key as string;
    expect((await prices(old)).status).toBe(200);
    expect((await prices(fresh)).status).toBe(200);
    await expectKvMatchesD1(id);
    // the old version's record now ends with its grace: well before 2038, so it has an expiration
    const oldExpiration = await kvExpiration(old);
    expect(oldExpiration.exists).toBe(true);
    expect(await kvExpiration(fresh)).toEqual({ exists: true, expiration: undefined });
    const rotationId = (rotated.body.rotation as Json).id as string;
    const rolledBack = await admin.post(`/rotations/${rotationId}/rollback`);
    expect(rolledBack.status, JSON.stringify(rolledBack.body)).toBe(200);
    expect((await prices(old)).status).toBe(200);
    expect((await prices(fresh)).status).toBe(401);
    expect(await kvExpiration(old)).toEqual({ exists: true, expiration: undefined });
    await expectKvMatchesD1(id);
  });
});
