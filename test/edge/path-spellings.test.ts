import { createExecutionContext, env, SELF } from "cloudflare:test";
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import worker from "../../src/index";
import { admin, newKey, type IssuedKey } from "../support/api";
import { stubOrigin } from "../support/origin-stub";
import { tokenFor } from "../tokens/fixtures";

/**
 * One path, one decision, at the front door: every spelling of a path meets the rule its
 * canonical form meets, and the origin receives that canonical form. The variants are the
 * ones an attack on a local `npm start` got through with a Flask and a Hono origin behind it.
 */

const BASE = "https://keygate.test";
const ORIGIN = "https://origin.test";

/** The rules of these tests: an admin area, a strict trade rule, deny rules. */
const RULES = [
  { path: "/public/*", public: true },
  { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
  { method: "POST", path: "/trade/*", scopes: ["trade:write"], strict: true },
  { path: "/admin", scopes: ["admin:all"] },
  { path: "/admin/*", scopes: ["admin:all"] },
  { path: "/internal/*", deny: true },
];

const origin = stubOrigin();

/** A request through the Worker with these tests' rules and an origin behind it. */
async function send(
  path: string,
  init: RequestInit = {},
  vars: Record<string, unknown> = {},
): Promise<Response> {
  // the usage report's waitUntil is not waited for: it flushes a second later
  return worker.fetch(
    new Request(`${BASE}${path}`, init),
    {
      ...env,
      ROUTE_RULES: JSON.stringify(RULES),
      ORIGIN_URL: `${ORIGIN}/api`,
      ...vars,
    } as typeof env,
    createExecutionContext(),
  );
}

const bearer = (secret: string) => ({ Authorization: `Bearer ${secret}` });

async function refusal(res: Response) {
  const body = (await res.json()) as { code: string };
  return { status: res.status, code: body.code, header: res.headers.get("Keygate-Error") };
}

describe("path spellings with a key holding no scopes", () => {
  let noScopes: IssuedKey;
  beforeEach(async () => {
    noScopes = await newKey([]);
  });

  it.each([
    "/prices/eur",
    "//prices/eur",
    "/%70rices/eur",
    "/PRICES/eur",
    "/Prices/EUR",
    "/prices/./eur",
    "/x/../prices/eur",
    "/%2e%2e/prices/eur",
    "/prices",
    "/prices.",
    "/admin",
    "/admin/",
    "/ADMIN",
    "/admin.",
    "/admin%20",
    "/admin%09",
    "/admin%85/x",
    "/admin%A0/x",
    "/admin%0C/x",
    "/admin%0B/x",
    "/admin%1F/x",
    "/admin%C2%A0",
    "/%61dmin",
    "/admin/x",
    "/Admin/X/",
  ])("%s is refused for scope, the origin never reached", async (path) => {
    const res = await send(path, { headers: bearer(noScopes.key) });
    expect(await refusal(res)).toEqual({
      status: 403,
      code: "insufficient_scope",
      header: "insufficient_scope",
    });
    expect(origin.requests).toHaveLength(0);
  });

  it.each([
    "/prices%2feur",
    "/prices%2Feur",
    "/prices;x/eur",
    "/admin%2f",
    "/admin;x",
    "/admin%5c",
    "/public/..%20/admin/x",
    "/public/..%09/internal/x",
    "/public/.%2E%20/admin/x",
    "/public/.../admin/x",
  ])("%s is 400 invalid_path, the origin never reached", async (path) => {
    const res = await send(path, { headers: bearer(noScopes.key) });
    expect(await refusal(res)).toEqual({
      status: 400,
      code: "invalid_path",
      header: "invalid_path",
    });
    expect(origin.requests).toHaveLength(0);
  });

  it("POST /TRADE/x meets the strict trade:write rule", async () => {
    const res = await send("/TRADE/x", { method: "POST", headers: bearer(noScopes.key) });
    expect(res.status).toBe(403);
    expect(origin.requests).toHaveLength(0);
  });

  it("an unlisted path reaches the origin as its canonical spelling", async () => {
    const res = await send("//things/./%61%62c//x/..//?q=1", { headers: bearer(noScopes.key) });
    expect(res.status).toBe(200);
    expect(origin.requests).toHaveLength(1);
    expect(origin.requests[0]!.url).toBe(`${ORIGIN}/api/things/abc/?q=1`);
  });
});

describe("path spellings with a scoped key", () => {
  it("the canonical spelling is what the origin receives, whatever was sent", async () => {
    const issued = await newKey(["prices:read"]);
    for (const path of ["/prices/eur", "//prices/eur", "/%70rices/eur", "/prices/x/../eur"]) {
      origin.requests.length = 0;
      const res = await send(path, { headers: bearer(issued.key) });
      expect(res.status, path).toBe(200);
      expect(origin.requests[0]!.url, path).toBe(`${ORIGIN}/api/prices/eur`);
    }
    origin.requests.length = 0;
    expect((await send("/PRICES/eur", { headers: bearer(issued.key) })).status).toBe(200);
    // case is the origin's business: it receives the spelling that met the rule
    expect(origin.requests[0]!.url).toBe(`${ORIGIN}/api/PRICES/eur`);
  });
});

describe("a revoked key's access token", () => {
  it.each([
    ["/trade/x", 401],
    ["/%74rade/x", 401],
    ["/TRADE/x", 401],
    ["/trade%2fx", 400],
  ])("POST %s is refused (%i)", async (path, status) => {
    const issued = await newKey(["trade:write"]);
    const token = await tokenFor(issued.key);
    await admin.post(`/keys/${issued.id}/revoke`);
    const res = await send(path, { method: "POST", headers: bearer(token), body: "{}" });
    expect(res.status).toBe(status);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("public rules match their exact spelling only", () => {
  it("/public/x and /%70ublic/x need no key; /PUBLIC/x and /public do", async () => {
    expect((await send("/public/x")).status).toBe(200);
    expect((await send("/%70ublic/x")).status).toBe(200);
    for (const path of ["/PUBLIC/x", "/Public/x", "/public"]) {
      expect(await refusal(await send(path)), path).toMatchObject({
        status: 401,
        code: "missing_credentials",
      });
    }
  });
});

describe("deny rules", () => {
  it.each([
    "/internal/x",
    "/INTERNAL/x",
    "/internal",
    "/internal/",
    "//internal/./x",
    "/internal%A0/x",
    "/internal%85/x",
  ])("%s answers 404 not_found, with or without a key, the origin never reached", async (path) => {
    const { key } = await newKey(["*"]);
    for (const headers of [{}, bearer(key)]) {
      expect(await refusal(await send(path, { headers }))).toEqual({
        status: 404,
        code: "not_found",
        header: "not_found",
      });
    }
    expect(origin.requests).toHaveLength(0);
  });

  it("a catch-all deny refuses every unlisted path", async () => {
    const { key } = await newKey(["prices:read"]);
    const rules = JSON.stringify([
      { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
      { path: "/*", deny: true },
    ]);
    expect(
      (await send("/prices/eur", { headers: bearer(key) }, { ROUTE_RULES: rules })).status,
    ).toBe(200);
    for (const path of ["/", "/other", "/PRICES", "/prices/eur?x=1"]) {
      const method = path === "/PRICES" ? "POST" : "DELETE";
      const res = await send(path, { method, headers: bearer(key) }, { ROUTE_RULES: rules });
      expect(res.status, path).toBe(404);
    }
    expect(origin.requests).toHaveLength(1);
  });
});

describe("the method a rule matched is the method the origin acts on", () => {
  it.each([
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "x_http_method_override",
    "X_HTTP_METHOD",
  ])("%s is removed before the origin", async (header) => {
    const { key } = await newKey(["prices:read"]);
    const res = await send("/prices/eur", { headers: { ...bearer(key), [header]: "POST" } });
    expect(res.status).toBe(200);
    const seen = [...origin.requests[0]!.headers.keys()].map((name) => name.toLowerCase());
    const others = seen.filter((name) => name !== "x-keygate-method");
    expect(others.some((name) => name.replaceAll("_", "-").includes("method"))).toBe(false);
    expect(origin.requests[0]!.method).toBe("GET");
    expect(origin.requests[0]!.headers.get("X-Keygate-Method")).toBe("GET");
  });

  it("the origin is told the method the rule matched, whatever the client claims", async () => {
    const { key } = await newKey(["trade:write"]);
    // Keygate never reads a body: a `_method` field is the origin's to refuse, and the
    // X-Keygate-Method header is what it compares with (docs/security.md)
    const res = await send("/trade/x", {
      method: "POST",
      headers: {
        ...bearer(key),
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Keygate-Method": "DELETE",
        X_Keygate_Method: "DELETE",
      },
      body: "_method=DELETE",
    });
    expect(res.status).toBe(200);
    const forwarded = origin.requests[0]!;
    expect(forwarded.method).toBe("POST");
    expect(forwarded.headers.get("X-Keygate-Method")).toBe("POST");
    expect(forwarded.headers.has("X_Keygate_Method")).toBe(false);
  });

  it.each([
    "_method=POST",
    "_METHOD=DELETE",
    "%5Fmethod=PUT",
    "a=1&_method=PATCH",
    "_method[]=x",
    ".method=DELETE",
    "[method=DELETE",
    "%5Bmethod=DELETE",
  ])("?%s is 400 invalid_path", async (query) => {
    const { key } = await newKey(["prices:read"]);
    const res = await send(`/prices/eur?${query}`, { headers: bearer(key) });
    expect(await refusal(res)).toEqual({
      status: 400,
      code: "invalid_path",
      header: "invalid_path",
    });
    expect(origin.requests).toHaveLength(0);
  });
});

describe("a secret in the path", () => {
  it.each([
    (key: string) => `/prices/${key}`,
    (key: string) => `/public/${key}`,
    (key: string) => `/public/x/${key.replace("_", "%5F")}`,
    (key: string) => `/public/${key}.json`,
    (key: string) => `/public/${key}Z`,
    (key: string) => `/public/${key.toUpperCase()}`,
    (key: string) => `/public/x?q=${key}0`,
    (key: string) => `/public/x?api.key=${key.slice(0, 10)}`,
  ])("is 400 credential_in_url and never reaches the origin (%#)", async (spell) => {
    const { key } = await newKey(["prices:read"]);
    const res = await send(spell(key), { headers: bearer(key) });
    expect(await refusal(res)).toEqual({
      status: 400,
      code: "credential_in_url",
      header: "credential_in_url",
    });
    expect(origin.requests).toHaveLength(0);
  });

  it("a signed link (a JWS) in the path is the origin's business", async () => {
    const { key } = await newKey(["prices:read"]);
    const res = await send(`/public/verify/${await tokenFor(key)}`);
    expect(res.status).toBe(200);
  });
});

describe("any spelling, the same decision and the same forwarded path (property)", () => {
  it("holds for random paths and their respellings, through the Worker", async () => {
    const issued = await newKey(["prices:read"]);
    const segment = fc.stringMatching(/^[a-zA-Z0-9._~-]{1,5}$/).filter((s) => !/^\.+$/.test(s));
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.constantFrom("prices", "admin", "public", "internal", "trade", "x"),
        fc.array(fc.nat(5), { minLength: 4, maxLength: 12 }),
        async (rest, head, choices) => {
          const path = `/${head}/${rest.join("/")}`;
          let i = 0;
          const respelt = path.replace(/[^/]|\//g, (char) => {
            const choice = choices[i++ % choices.length]!;
            if (char === "/") return choice === 1 ? "//" : choice === 2 ? "/./" : "/";
            return choice === 0 ? `%${char.charCodeAt(0).toString(16)}` : char;
          });
          origin.requests.length = 0;
          const a = await send(path, { headers: bearer(issued.key) });
          const forwardedA = origin.requests.map((r) => r.url);
          origin.requests.length = 0;
          const b = await send(respelt, { headers: bearer(issued.key) });
          const forwardedB = origin.requests.map((r) => r.url);
          expect(b.status, `${path} vs ${respelt}`).toBe(a.status);
          expect(b.headers.get("Keygate-Error")).toBe(a.headers.get("Keygate-Error"));
          expect(forwardedB).toEqual(forwardedA);
          await a.body?.cancel();
          await b.body?.cancel();
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("the echo origin shows the canonical path", () => {
  it("answers with the path the rules were matched on", async () => {
    const { key } = await newKey(["prices:read"]);
    const res = await SELF.fetch(`${BASE}//%70rices/./eur`, { headers: bearer(key) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ path: "/prices/eur", method: "GET" });
  });
});

describe("Keygate's own namespace in another spelling", () => {
  it.each(["/_KEYGATE/v1/consumers", "/_Keygate", "/.Well-Known/jwks.json", "/_keygate./x"])(
    "%s is 404 not_found, never proxied",
    async (path) => {
      const { key } = await newKey(["*"]);
      const res = await send(path, { headers: bearer(key) });
      expect(await refusal(res)).toEqual({ status: 404, code: "not_found", header: "not_found" });
      expect(origin.requests).toHaveLength(0);
    },
  );

  it("an escaped spelling is routed to the management API itself, and refused there", async () => {
    const { key } = await newKey(["*"]);
    const res = await send("/%5Fkeygate/v1/consumers", { headers: bearer(key) });
    expect(res.status).toBe(403);
    expect(origin.requests).toHaveLength(0);
  });
});
