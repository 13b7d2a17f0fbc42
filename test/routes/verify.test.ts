import { describe, expect, it } from "vitest";
import { admin, newKey } from "../support/api";

describe("POST /verify", () => {
  it("answers valid with the identity for a good key", async () => {
    const issued = await newKey(["prices:read"]);
    const res = await admin.post("/verify", { key: issued.key, scopes: ["prices:read"] });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      valid: true,
      keyId: issued.id,
      consumerId: issued.consumerId,
      version: 1,
      scopes: ["prices:read"],
      expiresAt: null,
      graceUntil: null,
    });
  });

  it("answers valid false with a code, never an error status, for bad keys", async () => {
    const issued = await newKey(["prices:read"]);
    const scope = await admin.post("/verify", { key: issued.key, scopes: ["trade:write"] });
    expect(scope.body).toMatchObject({
      valid: false,
      code: "insufficient_scope",
      keyId: issued.id,
    });
    const bogus = await admin.post("/verify", { key: "kg_bogus" });
    expect(bogus.status).toBe(200);
    expect(bogus.body).toMatchObject({
      valid: false,
      code: "invalid_key",
      keyId: null,
      consumerId: null,
    });
  });

  it("reports graceUntil for the old secret during a rotation, and key_expired after", async () => {
    const issued = await newKey();
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    const during = await admin.post("/verify", { key: issued.key });
    expect(during.body).toMatchObject({
      valid: true,
      version: 1,
      graceUntil: (rotated.body.rotation as { graceUntil: string }).graceUntil,
    });
    await admin.post(`/rotations/${(rotated.body.rotation as { id: string }).id}/complete`);
    expect((await admin.post("/verify", { key: issued.key })).body).toMatchObject({
      valid: false,
      code: "key_expired",
    });
  });

  it("accepts a key holding keygate:verify as the caller", async () => {
    const caller = await newKey(["keygate:verify"]);
    const target = await newKey();
    const res = await admin.post(
      "/verify",
      { key: target.key },
      { Authorization: `Bearer ${caller.key}` },
    );
    expect(res.status).toBe(200);
    expect(res.body.valid).toBe(true);
  });

  it.each([
    [{}],
    [{ key: "" }],
    [{ key: "k", extra: 1 }],
    [{ key: "k", scopes: ["*"] }],
    [{ key: "x".repeat(5000) }],
  ])("refuses an invalid body %#", async (body) => {
    expect((await admin.post("/verify", body)).status).toBe(400);
  });
});
