import { createExecutionContext, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { stubOrigin } from "../support/origin-stub";
import { newKey } from "../support/api";
import { tokenFor } from "../tokens/fixtures";

/**
 * What reaches the origin besides the path: no header a client sent that the origin could
 * read as Keygate's, none the client named hop-by-hop, Keygate's own forwarding headers; and
 * what never reaches it: a credential in the URL, found by name or by shape.
 */

const BASE = "https://keygate.test";
const ORIGIN = "https://origin.test";

const origin = stubOrigin();

async function send(path: string, init: RequestInit = {}): Promise<Response> {
  return worker.fetch(
    new Request(`${BASE}${path}`, init),
    { ...env, ORIGIN_URL: `${ORIGIN}/api` } as typeof env,
    createExecutionContext(),
  );
}

function headersSeen(): Record<string, string> {
  return Object.fromEntries([...origin.requests[0]!.headers].map(([n, v]) => [n.toLowerCase(), v]));
}

describe("client headers an origin could read as Keygate's", () => {
  it.each([
    "X_Keygate_Consumer",
    "x_keygate_scopes",
    "X-KEYGATE-CONSUMER",
    "X-Keygate_Key",
    "X_KEYGATE_KEY_VERSION",
    "X-Keygate-Assertion",
    "Keygate-Credential",
    "keygate_error",
  ])("%s never reaches the origin, on keyed and public routes", async (header) => {
    const { key } = await newKey(["prices:read"]);
    for (const [path, auth] of [
      ["/prices/eur", { Authorization: `Bearer ${key}` }],
      ["/public/x", {}],
    ] as const) {
      origin.requests.length = 0;
      const res = await send(path, { headers: { ...auth, [header]: "csm_victim admin:all" } });
      expect(res.status, path).toBe(200);
      for (const [name, value] of origin.requests[0]!.headers) {
        expect(value, `${path} ${name}`).not.toContain("csm_victim");
      }
    }
  });

  it("the identity headers the origin sees are Keygate's alone", async () => {
    const issued = await newKey(["prices:read"]);
    await send("/prices/eur", {
      headers: {
        Authorization: `Bearer ${issued.key}`,
        X_Keygate_Consumer: "csm_victim",
        X_Keygate_Scopes: "admin:all",
      },
    });
    const seen = headersSeen();
    expect(seen["x-keygate-consumer"]).toBe(issued.consumerId);
    expect(seen["x-keygate-scopes"]).toBe("prices:read");
    expect(Object.keys(seen).filter((n) => n.includes("_"))).toEqual([]);
  });
});

describe("hop-by-hop and rewriting headers", () => {
  it("drops every header the client names in Connection", async () => {
    const { key } = await newKey(["prices:read"]);
    await send("/prices/eur", {
      headers: {
        Authorization: `Bearer ${key}`,
        Connection: "keep-alive, X-Internal-Flag,x_other_flag",
        "X-Internal-Flag": "1",
        "X-Other-Flag": "1",
        "X-Kept": "1",
      },
    });
    const seen = headersSeen();
    expect(seen["x-internal-flag"]).toBeUndefined();
    expect(seen["x-other-flag"]).toBeUndefined();
    expect(seen["connection"]).toBeUndefined();
    expect(seen["x-kept"]).toBe("1");
  });

  it.each([
    "X-Original-URL",
    "X-Rewrite-URL",
    "x_original_url",
    "Forwarded",
    "X-Real-IP",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Forwarded-Uri",
    "X-Forwarded-Server",
    "x_forwarded_prefix",
    "X-Original-URI",
    "X-Original-Host",
    "True-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Client_IP",
    "X-Forwarded",
    "Forwarded-For",
    "X-Forward-For",
    "X-Originating-IP",
    "X-Remote-Addr",
    "Fastly-Client-IP",
    "CF-Connecting-IPv6",
    "X-Envoy-Original-Path",
    "X-Original-Path",
    "X-Original-Method",
    "X-Host",
    "X-Scheme",
    "Front-End-Https",
  ])("drops %s", async (header) => {
    const { key } = await newKey(["prices:read"]);
    await send("/prices/eur", {
      headers: { Authorization: `Bearer ${key}`, [header]: "/admin" },
    });
    const seen = headersSeen();
    expect(Object.values(seen)).not.toContain("/admin");
  });

  it("sets X-Forwarded-For, -Proto and -Host itself, whatever the client sent", async () => {
    const { key } = await newKey(["prices:read"]);
    await send("/prices/eur", {
      headers: {
        Authorization: `Bearer ${key}`,
        "CF-Connecting-IP": "203.0.113.7",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "admin.internal",
        X_Forwarded_For: "10.0.0.2",
      },
    });
    const seen = headersSeen();
    expect(seen["x-forwarded-for"]).toBe("203.0.113.7");
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen["x-forwarded-host"]).toBe("keygate.test");
    expect(Object.values(seen).join(" ")).not.toMatch(/10\.0\.0\.|admin\.internal/);
  });
});

describe("a credential in the URL, by name or by shape", () => {
  it.each([
    (key: string) => `x-api-key=${key}`,
    (key: string) => `api_key[]=${key}`,
    () => `API_KEY[0]=x`,
    (key: string) => `auth=${key}`,
    (key: string) => `secret=${key}`,
    (key: string) => `auth=Bearer%20${key}`,
    (key: string) => `q=${encodeURIComponent(key)}`,
    (key: string) => `${key}`,
    (key: string) => `a=1&b=${key}&c=2`,
  ])("query %# is 400 credential_in_url on keyed and public routes", async (query) => {
    const { key } = await newKey(["prices:read"]);
    for (const path of [`/prices/eur?${query(key)}`, `/public/x?${query(key)}`]) {
      const res = await send(path, { headers: { Authorization: `Bearer ${key}` } });
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe("credential_in_url");
      expect(res.headers.get("Keygate-Error")).toBe("credential_in_url");
    }
    expect(origin.requests).toHaveLength(0);
  });

  it("a JWT in any query value is refused", async () => {
    const { key } = await newKey(["prices:read"]);
    const token = await tokenFor(key);
    for (const query of [`t=${token}`, `state=${token}`, `x=prefix.${token}`]) {
      const res = await send(`/public/x?${query}`);
      expect(res.status, query).toBe(400);
    }
    expect(origin.requests).toHaveLength(0);
  });

  it("ordinary queries go through untouched", async () => {
    const { key } = await newKey(["prices:read"]);
    const query = "q=hello%20world&page=2&ids[]=1&sort=-created&kg=1&note=kg_short";
    const res = await send(`/prices/eur?${query}`, {
      headers: { Authorization: `Bearer ${key}` },
    });
    expect(res.status).toBe(200);
    expect(new URL(origin.requests[0]!.url).search).toBe(`?${query}`);
  });
});

describe("Keygate-Error tells Keygate's refusals from the origin's answers", () => {
  it("is on every refusal the front door makes", async () => {
    const issued = await newKey([]);
    const cases: [string, RequestInit, string][] = [
      ["/x", {}, "missing_credentials"],
      ["/x", { headers: { Authorization: "Bearer kg_nope" } }, "invalid_key"],
      ["/prices/eur", { headers: { Authorization: `Bearer ${issued.key}` } }, "insufficient_scope"],
      ["/x?api_key=1", {}, "credential_in_url"],
      ["/x%2fy", {}, "invalid_path"],
      [
        "/x",
        { headers: { Authorization: `Bearer ${issued.key}`, "X-API-Key": "other" } },
        "ambiguous_credentials",
      ],
    ];
    for (const [path, init, code] of cases) {
      const res = await send(path, init);
      expect(res.headers.get("Keygate-Error"), path).toBe(code);
      expect(((await res.json()) as { code: string }).code).toBe(code);
    }
  });

  it("is on the 502 when the origin cannot be reached", async () => {
    const { key } = await newKey([]);
    origin.answer = () => {
      throw new Error("connection refused");
    };
    const res = await send("/x", { headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(502);
    expect(res.headers.get("Keygate-Error")).toBe("origin_unavailable");
  });

  it("is never on the origin's own answers, a 401 included", async () => {
    const { key } = await newKey([]);
    origin.answer = () =>
      new Response("no", { status: 401, headers: { "Keygate-Error": "invalid_key" } });
    const res = await send("/x", { headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get("Keygate-Error")).toBeNull();
  });

  it("an origin cannot speak for the credential: its Keygate-Credential is dropped", async () => {
    const { key } = await newKey([]);
    origin.answer = () =>
      new Response("ok", { headers: { "Keygate-Credential": "state=grace, version=9" } });
    const res = await send("/x", { headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Keygate-Credential")).toBeNull();
  });
});
