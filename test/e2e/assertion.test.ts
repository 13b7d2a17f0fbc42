import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// through the package's exports map, as an origin's code imports it
import { createAssertionVerifier, type KeygateIdentity } from "keygate/origin";
import { listenOnLoopback, managementApi, request, type Json } from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * End to end: Keygate in miniflare proxies to a real Node origin that checks
 * `X-Keygate-Assertion` with the package's `keygate/origin` helper against Keygate's JWKS
 * over HTTP. The origin accepts what Keygate sends and refuses tampered, replayed-late and
 * other-origin assertions.
 */

interface NodeOrigin {
  url: string;
  /** assertions received, in order */
  assertions: string[];
  /** how far ahead of the real time the origin's clock runs */
  skewMs: number;
  close(): Promise<void>;
}

async function startCheckingOrigin(jwksUrl: () => string): Promise<NodeOrigin> {
  let verify: ((assertion: string | string[] | undefined) => Promise<KeygateIdentity>) | null =
    null;
  const state = { assertions: [] as string[], skewMs: 0 };
  const server: Server = createServer((req, res) => {
    const header = req.headers["x-keygate-assertion"];
    if (typeof header === "string") state.assertions.push(header);
    verify ??= createAssertionVerifier({
      jwksUrl: jwksUrl(),
      audience: origin.url,
      clock: () => new Date(Date.now() + state.skewMs),
    });
    verify(header).then(
      (who) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ verified: true, ...who, claims: undefined }));
      },
      (error: { code?: string; message?: string }) => {
        res.writeHead(401, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ verified: false, code: error.code, message: error.message }));
      },
    );
  });
  const listening = await listenOnLoopback(server);
  const origin: NodeOrigin = {
    url: listening.url,
    get assertions() {
      return state.assertions;
    },
    get skewMs() {
      return state.skewMs;
    },
    set skewMs(ms: number) {
      state.skewMs = ms;
    },
    close: listening.close,
  };
  return origin;
}

describe("origin assertions, end to end", () => {
  let keygate: Keygate;
  let origin: NodeOrigin;
  let other: NodeOrigin;
  let secret: string;
  let keyId: string;
  let consumerId: string;

  const jwksUrl = () => `${keygate.url}/.well-known/jwks.json`;
  const direct = (target: NodeOrigin, assertion: string) =>
    request(target.url, "GET", "/prices/eur", { headers: { "X-Keygate-Assertion": assertion } });

  beforeAll(async () => {
    origin = await startCheckingOrigin(jwksUrl);
    other = await startCheckingOrigin(jwksUrl);
    keygate = await startKeygate({
      originUrl: origin.url,
      routeRules: [{ method: "GET", path: "/prices/*", scopes: ["prices:read"] }],
    });
    const api = managementApi(keygate.url, keygate.adminToken);
    const consumer = await api.post("/consumers", { name: "Acme" });
    consumerId = consumer.body.id as string;
    const key = await api.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
    secret = key.body.key as string;
    keyId = key.body.id as string;
  });

  afterAll(async () => {
    await keygate?.stop();
    await origin?.close();
    await other?.close();
  });

  it("the origin accepts the assertion Keygate sends and learns who was verified", async () => {
    const res = await request(keygate.url, "GET", "/prices/eur", {
      headers: { Authorization: `Bearer ${secret}` },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      verified: true,
      consumerId,
      keyId,
      keyVersion: 1,
      scopes: ["prices:read"],
    });
  });

  it("and for requests made with an access token", async () => {
    const exchanged = await request(keygate.url, "POST", "/_keygate/v1/token", {
      headers: { Authorization: `Bearer ${secret}` },
    });
    expect(exchanged.status).toBe(200);
    const res = await request(keygate.url, "GET", "/prices/eur", {
      headers: { Authorization: `Bearer ${exchanged.body.access_token as string}` },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ verified: true, keyId, scopes: ["prices:read"] });
  });

  it("refuses a tampered assertion", async () => {
    const genuine = origin.assertions[0]!;
    expect((await direct(origin, genuine)).status).toBe(200);
    const [header, payload, signature] = genuine.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Json;
    const widened = Buffer.from(JSON.stringify({ ...claims, scope: "*" })).toString("base64url");
    const forged = await direct(origin, `${header}.${widened}.${signature}`);
    expect(forged.status).toBe(401);
    expect(forged.body).toMatchObject({ verified: false, code: "invalid" });
    const flipped = signature.startsWith("A") ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
    expect((await direct(origin, `${header}.${payload}.${flipped}`)).status).toBe(401);
  });

  it("refuses an assertion after it expired (replayed late)", async () => {
    const genuine = origin.assertions[0]!;
    origin.skewMs = 10 * 60_000;
    try {
      const late = await direct(origin, genuine);
      expect(late.status).toBe(401);
      expect(late.body).toMatchObject({ verified: false, code: "expired" });
    } finally {
      origin.skewMs = 0;
    }
  });

  it("refuses an assertion made for another origin", async () => {
    const genuine = origin.assertions[0]!;
    const elsewhere = await direct(other, genuine);
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.body).toMatchObject({ verified: false, code: "invalid" });
  });

  it("refuses a request with no assertion, or one an attacker signed", async () => {
    const none = await request(origin.url, "GET", "/prices/eur");
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: "missing" });
    const { generateKeyPair, SignJWT } = await import("jose");
    const attacker = await generateKeyPair("ES256");
    const [header] = origin.assertions[0]!.split(".") as [string];
    const kid = (JSON.parse(Buffer.from(header, "base64url").toString()) as { kid: string }).kid;
    const forged = await new SignJWT({ sub: keyId, cid: consumerId, ver: 1, scope: "*" })
      .setProtectedHeader({ alg: "ES256", kid, typ: "keygate-assertion+jwt" })
      .setIssuer("keygate")
      .setAudience(origin.url)
      .setIssuedAt()
      .setExpirationTime("2m")
      .sign(attacker.privateKey);
    expect((await direct(origin, forged)).status).toBe(401);
  });
});
