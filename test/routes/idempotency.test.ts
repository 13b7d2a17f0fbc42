import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, newConsumer, newKey } from "../support/api";

const idem = (key: string) => ({ "Idempotency-Key": key });
const unique = () => `idem-${crypto.randomUUID()}`;

async function countRows(sql: string, ...bound: string[]): Promise<number> {
  const row = await env.DB.prepare(sql)
    .bind(...bound)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

describe("Idempotency-Key", () => {
  it("replays a consumer creation without creating a second one", async () => {
    const key = unique();
    const name = `idem-${crypto.randomUUID()}`;
    const first = await admin.post("/consumers", { name }, idem(key));
    const second = await admin.post("/consumers", { name }, idem(key));
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    expect(second.body).toEqual(first.body);
    expect(await countRows("SELECT COUNT(*) AS n FROM consumers WHERE name = ?", name)).toBe(1);
  });

  it("replays a key creation with the plaintext secret removed", async () => {
    const consumer = await newConsumer();
    const key = unique();
    const first = await admin.post(`/consumers/${consumer}/keys`, { scopes: ["a:b"] }, idem(key));
    const second = await admin.post(`/consumers/${consumer}/keys`, { scopes: ["a:b"] }, idem(key));
    expect(first.body.key).toEqual(expect.any(String));
    expect(second.status).toBe(201);
    expect(second.body.key).toBeUndefined();
    expect(second.body.id).toBe(first.body.id);
    expect(await countRows("SELECT COUNT(*) AS n FROM keys WHERE consumer_id = ?", consumer)).toBe(
      1,
    );
    const stored = await env.DB.prepare("SELECT body FROM idempotency_records WHERE key = ?")
      .bind(key)
      .first<{ body: string }>();
    expect(stored?.body).not.toContain(first.body.key as string);
  });

  it("a retried rotation issues no second version", async () => {
    const issued = await newKey();
    const key = unique();
    const first = await admin.post(
      `/keys/${issued.id}/rotate`,
      { gracePeriodSeconds: 60 },
      idem(key),
    );
    const second = await admin.post(
      `/keys/${issued.id}/rotate`,
      { gracePeriodSeconds: 60 },
      idem(key),
    );
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
    expect(second.body.key).toBeUndefined();
    expect(second.body.rotation).toEqual(first.body.rotation);
    expect(
      await countRows("SELECT COUNT(*) AS n FROM key_versions WHERE key_id = ?", issued.id),
    ).toBe(2);
  });

  it("refuses the same key with a different request (409 conflict)", async () => {
    const key = unique();
    expect((await admin.post("/consumers", { name: "a" }, idem(key))).status).toBe(201);
    const other = await admin.post("/consumers", { name: "b" }, idem(key));
    expect(other.status).toBe(409);
    expect(other.body.code).toBe("conflict");
  });

  it("keeps nothing for a failed request, so a corrected retry with the same key works", async () => {
    const key = unique();
    expect((await admin.post("/consumers", { name: "" }, idem(key))).status).toBe(400);
    const retried = await admin.post("/consumers", { name: "fixed" }, idem(key));
    expect(retried.status).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("concurrent requests with one key create exactly one resource", async () => {
    const consumer = await newConsumer();
    const key = unique();
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        admin.post(`/consumers/${consumer}/keys`, { scopes: [] }, idem(key)),
      ),
    );
    for (const r of results) expect([201, 409]).toContain(r.status);
    expect(results.filter((r) => r.status === 201 && r.body.key !== undefined)).toHaveLength(1);
    expect(await countRows("SELECT COUNT(*) AS n FROM keys WHERE consumer_id = ?", consumer)).toBe(
      1,
    );
  });

  it("scopes keys per caller", async () => {
    const key = unique();
    const operator = await newKey(["keygate:admin"]);
    const a = await admin.post("/consumers", { name: "same" }, idem(key));
    const b = await admin.post(
      "/consumers",
      { name: "same" },
      { ...idem(key), Authorization: `Bearer ${operator.key}` },
    );
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.id).not.toBe(a.body.id);
  });

  it.each([["x".repeat(256)], ["has space"], ["ünïcode"]])(
    "refuses a malformed key %#",
    async (value) => {
      const res = await admin.post("/consumers", { name: "x" }, { "Idempotency-Key": value });
      expect(res.status).toBe(400);
    },
  );
});
