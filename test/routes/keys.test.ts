import { describe, expect, it } from "vitest";
import { admin, newConsumer, newKey, withKey } from "../support/api";

const SECRET = /^kg_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}$/;

describe("keys", () => {
  it("issues a key whose secret is shown once and never again", async () => {
    const consumer = await newConsumer();
    const created = await admin.post(`/consumers/${consumer}/keys`, {
      name: "ci",
      scopes: ["prices:read", "trade:*"],
      metadata: { env: "prod" },
    });
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    expect(key).toMatch(SECRET);
    expect(created.body).toMatchObject({
      version: 1,
      status: "active",
      scopes: ["prices:read", "trade:*"],
      hint: key.slice(-4),
      expiresAt: null,
      consumerId: consumer,
    });
    expect(key).toContain(created.body.id as string);
    const read = await admin.get(`/keys/${created.body.id as string}`);
    expect(read.status).toBe(200);
    expect(JSON.stringify(read.body)).not.toContain(key);
    expect(JSON.stringify(read.body)).not.toMatch(/[0-9a-f]{64}/);
    expect(read.body.versions).toEqual([
      expect.objectContaining({
        version: 1,
        status: "active",
        hint: key.slice(-4),
        graceUntil: null,
      }),
    ]);
    const listed = await admin.get(`/consumers/${consumer}/keys`);
    expect(JSON.stringify(listed.body)).not.toContain(key);
  });

  it("shows lastUsedAt null for versions never used, across a rotation", async () => {
    const { id } = await newKey();
    expect((await admin.post(`/keys/${id}/rotate`, { gracePeriodSeconds: 3600 })).status).toBe(201);
    const shown = await admin.get(`/keys/${id}`);
    const versions = shown.body.versions as { version: number; lastUsedAt: string | null }[];
    expect(versions.map((v) => v.version).sort()).toEqual([1, 2]);
    for (const version of versions) expect(version.lastUsedAt).toBeNull();
  });

  it("lists a consumer's keys", async () => {
    const consumer = await newConsumer();
    await newKey(["a:read"], {}, consumer);
    await newKey(["b:read"], {}, consumer);
    const listed = await admin.get(`/consumers/${consumer}/keys?limit=1`);
    expect(listed.status).toBe(200);
    expect((listed.body.items as unknown[]).length).toBe(1);
    const next = await admin.get(
      `/consumers/${consumer}/keys?limit=1&cursor=${listed.body.nextCursor as string}`,
    );
    expect((next.body.items as unknown[]).length).toBe(1);
    expect(next.body.nextCursor).toBeNull();
  });

  it("expires a key at expiresAt: key_expired, by timestamp", async () => {
    const soon = new Date(Date.now() + 1500).toISOString();
    const issued = await newKey(["prices:read"], { expiresAt: soon });
    expect((await withKey(issued.key)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1600));
    const res = await withKey(issued.key);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe("key_expired");
    expect((await admin.get(`/keys/${issued.id}`)).body.status).toBe("expired");
  });

  it("patches name, metadata and the current version's scopes", async () => {
    const issued = await newKey(["prices:read"]);
    const patched = await admin.patch(`/keys/${issued.id}`, {
      name: "renamed",
      scopes: ["orders:read"],
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ name: "renamed", scopes: ["orders:read"] });
    expect((await withKey(issued.key, "/prices/eur")).status).toBe(403);
  });

  it("revokes every version at once, idempotently", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 3600 });
    const first = await admin.post(`/keys/${issued.id}/revoke`, { reason: "leaked" });
    expect(first.status).toBe(200);
    expect(first.body.status).toBe("revoked");
    expect((first.body.versions as { status: string }[]).every((v) => v.status === "revoked")).toBe(
      true,
    );
    const again = await admin.post(`/keys/${issued.id}/revoke`, {});
    expect(again.status).toBe(200);
    for (const secret of [issued.key, rotated.body.key as string]) {
      const res = await withKey(secret);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe("invalid_key");
    }
    const audit = await admin.get(`/audit?keyId=${issued.id}&action=key.revoked`);
    expect((audit.body.items as unknown[]).length).toBe(1);
  });

  describe("errors", () => {
    it.each([
      ["missing scopes", {}],
      ["bad scope", { scopes: ["Prices:Read"] }],
      ["scope without action", { scopes: ["prices"] }],
      ["past expiry", { scopes: [], expiresAt: "2020-01-01T00:00:00Z" }],
      ["non-ISO expiry", { scopes: [], expiresAt: "tomorrow" }],
      ["unknown field", { scopes: [], secret: "mine" }],
    ])("refuses %s with 400", async (_label, body) => {
      const consumer = await newConsumer();
      const res = await admin.post(`/consumers/${consumer}/keys`, body);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
    });

    it("answers 404 for an unknown key on every key route", async () => {
      for (const res of [
        await admin.get("/keys/0000000000000000"),
        await admin.patch("/keys/0000000000000000", { name: "x" }),
        await admin.post("/keys/0000000000000000/rotate"),
        await admin.post("/keys/0000000000000000/revoke"),
        await admin.get("/keys/0000000000000000/rotations"),
      ]) {
        expect(res.status).toBe(404);
        expect(res.body.code).toBe("not_found");
      }
    });

    it("refuses to patch a revoked key (409 conflict)", async () => {
      const issued = await newKey();
      await admin.post(`/keys/${issued.id}/revoke`);
      const res = await admin.patch(`/keys/${issued.id}`, { name: "x" });
      expect(res.status).toBe(409);
      expect(res.body.code).toBe("conflict");
    });
  });
});
