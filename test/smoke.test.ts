import { describe, expect, it } from "vitest";
import { admin, newKey, withKey } from "./support/api";

describe("smoke", () => {
  it("issues a key that opens the front door, rotates it, and both work in grace", async () => {
    const issued = await newKey(["prices:read"]);
    expect(issued.key).toMatch(/^kg_/);
    const first = await withKey(issued.key, "/prices/eur");
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ keyId: issued.id, keyVersion: 1 });
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 3600 });
    expect(rotated.status).toBe(201);
    const oldUse = await withKey(issued.key, "/prices/eur");
    expect(oldUse.status).toBe(200);
    expect(oldUse.headers.get("Deprecation")).toMatch(/^@\d+$/);
    expect(oldUse.headers.get("Sunset")).toBeTruthy();
    const newUse = await withKey(rotated.body.key as string, "/prices/eur");
    expect(newUse.status).toBe(200);
    expect(await newUse.json()).toMatchObject({ keyVersion: 2 });
  });
});
