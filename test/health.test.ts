import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index";

const BASE = "https://keygate.test";
const ORIGIN = "https://origin.internal.example/api";

/** `GET /_keygate/health` of the Worker run with other vars, in this isolate. */
async function healthWith(vars: Record<string, unknown>) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}/_keygate/health`),
    { ...env, ...vars } as typeof env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return { status: response.status, text: await response.text() };
}

describe("GET /_keygate/health", () => {
  it("says which configuration runs: origin kind, rule count, cache TTL", async () => {
    const res = await SELF.fetch(`${BASE}/_keygate/health`);
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Request-Id")).toMatch(/^req_/);
    expect(await res.json()).toEqual({
      status: "ok",
      version: expect.any(String),
      config: {
        origin: "echo",
        routeRules: 4,
        cacheTtlSeconds: 10,
      },
    });
  });

  it("never shows the origin URL or the rules, only that they are set", async () => {
    const { status, text } = await healthWith({ ORIGIN_URL: ORIGIN, CACHE_TTL_SECONDS: "30" });
    expect(status).toBe(200);
    expect(JSON.parse(text)).toMatchObject({
      config: { origin: "configured", routeRules: 4, cacheTtlSeconds: 30 },
    });
    expect(text).not.toContain("origin.internal");
    expect(text).not.toContain("/prices");
  });

  it("answers 503 with the problems when the configuration is invalid", async () => {
    const { status, text } = await healthWith({ CACHE_TTL_SECONDS: "soon" });
    expect(status).toBe(503);
    expect(JSON.parse(text)).toMatchObject({
      status: "misconfigured",
      problems: [expect.stringContaining("CACHE_TTL_SECONDS")],
    });
  });
});
