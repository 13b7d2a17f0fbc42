import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { managementApi, startOrigin, type Origin } from "./support/http.js";
import { rawRequest } from "./support/raw-http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * The hardened front door over real HTTP: the Worker in miniflare, a real Node origin behind
 * it, requests written byte for byte on a socket (so no client library tidies a path or a
 * header name first), as the attack on a local `npm start` sent them.
 */

const ROUTE_RULES = [
  { path: "/public/*", public: true },
  { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
  { method: "POST", path: "/trade/*", scopes: ["trade:write"], strict: true },
  { path: "/admin", scopes: ["admin:all"] },
  { path: "/internal/*", deny: true },
];

let origin: Origin;
let keygate: Keygate;
let api: ReturnType<typeof managementApi>;
let noScopes: string;
let pricesKey: string;

beforeAll(async () => {
  origin = await startOrigin();
  keygate = await startKeygate({ originUrl: origin.url, routeRules: ROUTE_RULES });
  api = managementApi(keygate.url, keygate.adminToken);
  const consumer = await api.post("/consumers", { name: "hardening" });
  const consumerId = consumer.body.id as string;
  noScopes = (await api.post(`/consumers/${consumerId}/keys`, { scopes: [] })).body.key as string;
  pricesKey = (await api.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] })).body
    .key as string;
});

afterAll(async () => {
  await keygate?.stop();
  await origin?.close();
});

function send(method: string, target: string, headers: string[] = []) {
  const host = new URL(keygate.url).host;
  const head = [`${method} ${target} HTTP/1.1`, `Host: ${host}`, "Connection: close", ...headers];
  return rawRequest(keygate.url, head.join("\r\n"));
}

describe("paths over the wire", () => {
  it.each([
    "//prices/eur",
    "/%70rices/eur",
    "/PRICES/eur",
    "/prices/./eur",
    "/x/%2e%2e/prices/eur",
    "/admin/",
    "/ADMIN",
    "/admin.",
    "/%61dmin",
  ])("GET %s with a key holding no scopes: 403, the origin never reached", async (target) => {
    const before = origin.seen.length;
    const reply = await send("GET", target, [`Authorization: Bearer ${noScopes}`]);
    expect(reply.status).toBe(403);
    expect(reply.headers.get("keygate-error")).toBe("insufficient_scope");
    expect(origin.seen.length).toBe(before);
  });

  it.each(["/prices%2feur", "/prices;x/eur", "/admin%2f", "/admin;x", "/trade%2fx"])(
    "GET %s: 400 invalid_path, the origin never reached",
    async (target) => {
      const before = origin.seen.length;
      const reply = await send("GET", target, [`Authorization: Bearer ${noScopes}`]);
      expect(reply.status).toBe(400);
      expect(reply.headers.get("keygate-error")).toBe("invalid_path");
      expect(origin.seen.length).toBe(before);
    },
  );

  it("POST /TRADE/x meets the strict trade:write rule", async () => {
    const reply = await send("POST", "/TRADE/x", [
      `Authorization: Bearer ${noScopes}`,
      "Content-Length: 0",
    ]);
    expect(reply.status).toBe(403);
  });

  it("a deny rule answers 404 before the origin, in any spelling", async () => {
    const before = origin.seen.length;
    for (const target of ["/internal/x", "/INTERNAL/x", "//internal/./x"]) {
      const reply = await send("GET", target, [`Authorization: Bearer ${pricesKey}`]);
      expect(reply.status, target).toBe(404);
    }
    expect(origin.seen.length).toBe(before);
  });

  it("the origin receives the canonical path", async () => {
    const reply = await send("GET", "//%70rices/./eur/x/..?day=1", [
      `Authorization: Bearer ${pricesKey}`,
    ]);
    expect(reply.status).toBe(200);
    expect(origin.seen.at(-1)!.url).toBe("/prices/eur/?day=1");
  });
});

describe("headers over the wire", () => {
  it("underscore spellings of identity headers never reach the origin", async () => {
    const reply = await send("GET", "/prices/eur", [
      `Authorization: Bearer ${pricesKey}`,
      "X_Keygate_Consumer: csm_victim",
      "X_Keygate_Scopes: admin:all",
      "X-HTTP-Method-Override: DELETE",
      "X-Original-URL: /admin",
      "Connection: close, X-Secret-Flag",
      "X-Secret-Flag: 1",
    ]);
    expect(reply.status).toBe(200);
    const seen = origin.seen.at(-1)!;
    const names = Object.keys(seen.headers);
    expect(names.filter((n) => n.includes("_"))).toEqual([]);
    expect(seen.headers["x-keygate-scopes"]).toBe("prices:read");
    expect(seen.headers["x-http-method-override"]).toBeUndefined();
    expect(seen.headers["x-original-url"]).toBeUndefined();
    expect(seen.headers["x-secret-flag"]).toBeUndefined();
    expect(seen.method).toBe("GET");
  });

  it("a credential in the query, by shape, is refused before the origin", async () => {
    const before = origin.seen.length;
    for (const query of [`x-api-key=${pricesKey}`, `api_key[]=${pricesKey}`, `auth=${pricesKey}`]) {
      const reply = await send("GET", `/public/x?${query}`);
      expect(reply.status, query).toBe(400);
      expect(reply.headers.get("keygate-error")).toBe("credential_in_url");
    }
    expect(origin.seen.length).toBe(before);
  });
});
