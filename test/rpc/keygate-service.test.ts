import { createExecutionContext, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyCheck } from "../../src/edge/check-key";
import { KeygateService } from "../../src/rpc/keygate-service";
import { admin, newKey } from "../support/api";
import { failing, faultSwitch } from "../support/faults";
import { tokenFor } from "../tokens/fixtures";

/**
 * KeygateService over a real service binding: `RPC_CLIENT` is an auxiliary Worker
 * (test/support/rpc-client.mjs) whose `KEYGATE` binding points at the Worker under test's
 * `KeygateService` entrypoint, as another team's Worker would bind it.
 */

type Answer = { ok: true; result: KeyCheck } | { ok: false; error: string };

async function verify(key: unknown, scopes?: unknown): Promise<Answer> {
  const res = await env.RPC_CLIENT.fetch("https://rpc-client.test/", {
    method: "POST",
    body: JSON.stringify({ key, scopes }),
  });
  return (await res.json()) as Answer;
}

async function result(key: unknown, scopes?: unknown): Promise<KeyCheck> {
  const answer = await verify(key, scopes);
  if (!answer.ok) throw new Error(`verify rejected: ${answer.error}`);
  return answer.result;
}

describe("KeygateService.verify over a service binding", () => {
  it("answers who a valid key belongs to", async () => {
    const issued = await newKey(["prices:read"]);
    expect(await result(issued.key, ["prices:read"])).toEqual({
      valid: true,
      keyId: issued.id,
      consumerId: issued.consumerId,
      version: 1,
      scopes: ["prices:read"],
      expiresAt: null,
      graceUntil: null,
    });
  });

  it("refuses a key without the scopes asked for", async () => {
    const issued = await newKey(["prices:read"]);
    expect(await result(issued.key, ["trade:write"])).toMatchObject({
      valid: false,
      code: "insufficient_scope",
      keyId: issued.id,
    });
  });

  it("refuses unknown, malformed and revoked keys alike", async () => {
    const issued = await newKey();
    await admin.post(`/keys/${issued.id}/revoke`, {});
    for (const key of [issued.key, "kg_nope", "", 42, null]) {
      expect(await result(key)).toMatchObject({ valid: false, code: "invalid_key", keyId: null });
    }
  });

  it("verifies access tokens too", async () => {
    const issued = await newKey(["prices:read", "orders:read"]);
    const token = await tokenFor(issued.key, { scope: "orders:read" });
    expect(await result(token, ["orders:read"])).toMatchObject({
      valid: true,
      keyId: issued.id,
      scopes: ["orders:read"],
    });
    expect(await result(token, ["prices:read"])).toMatchObject({
      valid: false,
      code: "insufficient_scope",
    });
  });

  it("charges and enforces the key's rate limit", async () => {
    const issued = await newKey([], { rateLimit: { limit: 1, periodSeconds: 86_400 } });
    const first = await result(issued.key);
    expect(first).toMatchObject({ valid: true });
    expect(first.ratelimit?.policy).toContain('"key";q=1');
    expect(await result(issued.key)).toMatchObject({ valid: false, code: "rate_limited" });
  });

  it("rejects with an error starting 'unavailable' when storage fails (fail closed)", async () => {
    const issued = await newKey();
    const service = new KeygateService(createExecutionContext(), {
      ...env,
      CACHE_TTL_SECONDS: "0",
      KEYS: failing(env.KEYS, ["get"], faultSwitch()),
    });
    await expect(service.verify(issued.key)).rejects.toThrow(/^unavailable: /);
  });
});
