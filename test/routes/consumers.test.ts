import { describe, expect, it } from "vitest";
import { admin, call, newConsumer, newKey, withKey } from "../support/api";

describe("consumers", () => {
  it("creates a consumer and reads it back", async () => {
    const created = await admin.post("/consumers", {
      name: "Acme",
      metadata: { plan: "pro" },
      rateLimit: { limit: 100, periodSeconds: 60 },
      monthlyQuota: 100000,
      webhookUrl: "https://hooks.example.com/keygate",
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: "Acme",
      metadata: { plan: "pro" },
      monthlyQuota: 100000,
    });
    expect(created.body.id).toMatch(/^csm_/);
    // the webhook secret is in the creating response only
    const { webhookSecret, ...shown } = created.body;
    expect(webhookSecret).toMatch(/^whsec_/);
    const read = await admin.get(`/consumers/${created.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(shown);
  });

  it("lists consumers newest first with a working cursor", async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await newConsumer(`list-${i}`));
    const first = await admin.get("/consumers?limit=2");
    expect(first.status).toBe(200);
    expect((first.body.items as unknown[]).length).toBe(2);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await admin.get(`/consumers?limit=2&cursor=${first.body.nextCursor as string}`);
    expect(second.status).toBe(200);
    const seen = [
      ...(first.body.items as { id: string }[]),
      ...(second.body.items as { id: string }[]),
    ].map((c) => c.id);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("patches a consumer and keeps the fields it did not name", async () => {
    const id = await newConsumer("Before");
    const patched = await admin.patch(`/consumers/${id}`, { name: "After", monthlyQuota: 5 });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ name: "After", monthlyQuota: 5 });
  });

  it("deleting a consumer revokes every key of it at once", async () => {
    const id = await newConsumer();
    const a = await newKey(["prices:read"], {}, id);
    const b = await newKey(["prices:read"], {}, id);
    expect((await withKey(a.key)).status).toBe(200);
    const deleted = await admin.delete(`/consumers/${id}`);
    expect(deleted.status).toBe(200);
    expect((deleted.body.revokedKeys as string[]).sort()).toEqual([a.id, b.id].sort());
    expect((await withKey(a.key)).status).toBe(401);
    expect((await withKey(b.key)).status).toBe(401);
    expect((await admin.get(`/consumers/${id}`)).status).toBe(404);
    expect((await admin.delete(`/consumers/${id}`)).status).toBe(404);
  });

  describe("errors", () => {
    it.each([
      ["missing name", {}],
      ["empty name", { name: "" }],
      ["unknown field", { name: "x", plan: "pro" }],
      ["wrong type", { name: 42 }],
      ["bad rate limit", { name: "x", rateLimit: { limit: 0, periodSeconds: 60 } }],
      [
        "unknown rate-limit field",
        { name: "x", rateLimit: { limit: 1, periodSeconds: 60, burst: 2 } },
      ],
      ["non-http webhook", { name: "x", webhookUrl: "ftp://example.com" }],
      ["array body", [1, 2]],
    ])("refuses %s with 400 validation_failed", async (_label, body) => {
      const res = await admin.post("/consumers", body);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.requestId).toEqual(expect.any(String));
      expect(res.headers.get("Cache-Control")).toBe("no-store");
    });

    it("refuses malformed JSON with 400", async () => {
      const res = await admin.post("/consumers", "{not json");
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
    });

    it("refuses a body that is not JSON", async () => {
      const res = await call("POST", "/_keygate/v1/consumers", "name=x", {
        Authorization: `Bearer test-admin-token-0123456789`,
        "Content-Type": "application/x-www-form-urlencoded",
      });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
    });

    it("refuses a body over 64 KiB with 413 payload_too_large", async () => {
      const res = await admin.post("/consumers", {
        name: "x",
        metadata: { blob: "a".repeat(70_000) },
      });
      expect(res.status).toBe(413);
      expect(res.body.code).toBe("payload_too_large");
    });

    it("answers 404 not_found for an unknown consumer", async () => {
      for (const res of [
        await admin.get("/consumers/csm_nope"),
        await admin.patch("/consumers/csm_nope", { name: "x" }),
        await admin.delete("/consumers/csm_nope"),
        await admin.post("/consumers/csm_nope/keys", { scopes: [] }),
        await admin.get("/consumers/csm_nope/keys"),
      ]) {
        expect(res.status).toBe(404);
        expect(res.body.code).toBe("not_found");
      }
    });

    it("refuses a bad cursor or limit", async () => {
      expect((await admin.get("/consumers?limit=0")).status).toBe(400);
      expect((await admin.get("/consumers?limit=101")).status).toBe(400);
      expect((await admin.get("/consumers?unknown=1")).status).toBe(400);
      const bogus = await admin.get("/consumers?cursor=%25%25%25");
      expect(bogus.status).toBe(400);
      expect(bogus.body.code).toBe("validation_failed");
    });
  });
});
