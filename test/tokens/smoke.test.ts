import { SELF } from "cloudflare:test";
import { expect, it } from "vitest";
import { call, newKey, withKey } from "../support/api";

it("exchanges a key for a JWT that opens the front door", async () => {
  const issued = await newKey(["prices:read", "orders:read"]);
  const res = await call(
    "POST",
    "/_keygate/v1/token",
    { scope: "prices:read" },
    { Authorization: `Bearer ${issued.key}` },
  );
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ token_type: "Bearer", expires_in: 600, scope: "prices:read" });
  const token = res.body.access_token as string;
  const ok = await withKey(token, "/prices/eur");
  expect(ok.status).toBe(200);
  expect(await ok.json()).toMatchObject({
    keyId: issued.id,
    keyVersion: 1,
    scopes: ["prices:read"],
  });
  const jwks = (await (await SELF.fetch("https://keygate.test/.well-known/jwks.json")).json()) as {
    keys: unknown[];
  };
  expect(jwks.keys.length).toBeGreaterThanOrEqual(2);
  expect(JSON.stringify(jwks)).not.toMatch(/"d":/);
});
