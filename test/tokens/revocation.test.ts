import { describe, expect, it } from "vitest";
import { intersectScopes } from "../../src/keys/scopes";
import { admin, codeOf, newKey, withKey } from "../support/api";
import { tokenFor } from "./fixtures";

/**
 * What a change to the underlying key does to its tokens. Strict routes (`POST /trade/*`,
 * `/strict/*` in the test ROUTE_RULES) check the key's coordinator on every request, so a
 * change applies at once there; elsewhere a token is trusted until its `exp`.
 */

const trade = (token: string) => withKey(token, "/trade/buy", { method: "POST" });

describe("revocation and changes behind a token", () => {
  it("revoking the key stops its tokens at once on strict routes", async () => {
    const issued = await newKey(["trade:write", "prices:read"]);
    const token = await tokenFor(issued.key);
    expect((await trade(token)).status).toBe(200);
    expect((await withKey(token, "/strict/x")).status).toBe(200);
    expect((await admin.post(`/keys/${issued.id}/revoke`, {})).status).toBe(200);
    const refused = await trade(token);
    expect(refused.status).toBe(401);
    expect(await codeOf(refused)).toBe("invalid_key");
    expect((await withKey(token, "/strict/x")).status).toBe(401);
  });

  it("on non-strict routes a token keeps working until its exp (the documented bound)", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key, { expiresIn: 60 });
    expect((await admin.post(`/keys/${issued.id}/revoke`, {})).status).toBe(200);
    expect((await withKey(token, "/prices/eur")).status).toBe(200);
    // the secret itself is refused at once, here and everywhere within the cache bound
    expect((await withKey(issued.key, "/prices/eur")).status).toBe(401);
  });

  it("scopes narrowed since the token was issued stop it on strict routes", async () => {
    const issued = await newKey(["trade:write", "prices:read"]);
    const token = await tokenFor(issued.key);
    expect((await trade(token)).status).toBe(200);
    const patched = await admin.patch(`/keys/${issued.id}`, { scopes: ["prices:read"] });
    expect(patched.status).toBe(200);
    const refused = await trade(token);
    expect(refused.status).toBe(403);
    expect(await codeOf(refused)).toBe("insufficient_scope");
    // the origin is told the scopes the token and the key both grant
    const seen = await withKey(token, "/strict/x");
    expect(seen.status).toBe(200);
    expect(((await seen.json()) as { scopes: string[] }).scopes).toEqual(["prices:read"]);
  });

  it("a widened key does not widen a narrowed token", async () => {
    const issued = await newKey(["prices:read", "trade:write"]);
    const token = await tokenFor(issued.key, { scope: "prices:read" });
    await admin.patch(`/keys/${issued.id}`, { scopes: ["*"] });
    expect((await trade(token)).status).toBe(403);
  });

  it("strict routes apply the key's current rate limit, not the one in the token", async () => {
    const issued = await newKey(["trade:write"]);
    const token = await tokenFor(issued.key);
    const patched = await admin.patch(`/keys/${issued.id}`, {
      rateLimit: { limit: 1, periodSeconds: 86_400 },
    });
    expect(patched.status).toBe(200);
    const first = await trade(token);
    expect(first.status).toBe(200);
    expect(first.headers.get("RateLimit-Policy")).toContain('"key";q=1');
    expect((await trade(token)).status).toBe(429);
  });

  it("a version whose grace has ended stops its tokens on strict routes", async () => {
    const issued = await newKey(["trade:write"]);
    const token = await tokenFor(issued.key);
    await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const refused = await trade(token);
    expect(refused.status).toBe(401);
    expect(await codeOf(refused)).toBe("key_expired");
  });
});

describe("intersectScopes", () => {
  it("keeps what both grant, wildcards on either side", () => {
    expect(intersectScopes(["prices:read", "trade:write"], ["prices:read"])).toEqual([
      "prices:read",
    ]);
    expect(intersectScopes(["prices:read"], ["prices:*"])).toEqual(["prices:read"]);
    expect(intersectScopes(["prices:*"], ["prices:read", "orders:read"])).toEqual(["prices:read"]);
    expect(intersectScopes(["*"], ["prices:read"])).toEqual(["prices:read"]);
    expect(intersectScopes(["prices:read"], ["*"])).toEqual(["prices:read"]);
    expect(intersectScopes(["prices:read"], [])).toEqual([]);
  });
});
