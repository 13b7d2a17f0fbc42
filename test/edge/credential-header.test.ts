import { describe, expect, it } from "vitest";
import { admin, newKey, withKey } from "../support/api";

/**
 * `Keygate-Credential` (an RFC 9651 dictionary) on a response to a request made with a
 * version that has a deadline ahead: what client libraries read to learn their secret's state.
 */

const DAY = 86_400_000;
const unix = (ms: number) => `@${Math.floor(ms / 1000)}`;

describe("Keygate-Credential", () => {
  it("says state=grace, the version and its sunset on the old secret of a rotation", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 3600 });
    const graceUntil = Date.parse((rotated.body.rotation as { graceUntil: string }).graceUntil);
    const old = await withKey(issued.key, "/prices/eur");
    expect(old.status).toBe(200);
    expect(old.headers.get("Keygate-Credential")).toBe(
      `state=grace, version=1, sunset=${unix(graceUntil)}`,
    );
    // the new secret has no deadline: no header
    const fresh = await withKey(rotated.body.key as string, "/prices/eur");
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get("Keygate-Credential")).toBeNull();
  });

  it("leaves sunset out while a first-use grace has not started and nothing else ends it", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, {
      gracePeriodSeconds: 3600,
      graceStartsOnFirstUse: true,
    });
    expect(rotated.status).toBe(201);
    const old = await withKey(issued.key, "/prices/eur");
    expect(old.headers.get("Keygate-Credential")).toBe("state=grace, version=1");
  });

  it("says state=expiring within 7 days of expiresAt, and nothing before", async () => {
    const soon = Date.now() + 3 * DAY;
    const expiring = await newKey(["prices:read"], { expiresAt: new Date(soon).toISOString() });
    const res = await withKey(expiring.key, "/prices/eur");
    expect(res.status).toBe(200);
    expect(res.headers.get("Keygate-Credential")).toBe(
      `state=expiring, version=1, sunset=${unix(soon)}`,
    );
    const later = await newKey(["prices:read"], {
      expiresAt: new Date(Date.now() + 30 * DAY).toISOString(),
    });
    expect((await withKey(later.key, "/prices/eur")).headers.get("Keygate-Credential")).toBeNull();
  });

  it("is never on a refusal, and never on a key with no deadline", async () => {
    const plain = await newKey(["prices:read"]);
    expect((await withKey(plain.key, "/prices/eur")).headers.get("Keygate-Credential")).toBeNull();
    const soon = await newKey(["prices:read"], {
      expiresAt: new Date(Date.now() + DAY).toISOString(),
    });
    const refused = await withKey(soon.key, "/trade/x", { method: "POST" });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("Keygate-Credential")).toBeNull();
  });
});
