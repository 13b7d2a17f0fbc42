import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { managementApi, startOrigin, type Origin } from "./support/http.js";
import { rawRequest, type RawReply } from "./support/raw-http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * Requests whose body framing is ambiguous (conflicting Content-Length, Transfer-Encoding
 * repeated or beside Content-Length), sent over a bare socket to the Worker in workerd, on the
 * front door (with a valid key, and on a public route) and on the management API. Each is
 * answered 400 `malformed_request` by Keygate where the Worker sees it, or refused by
 * workerd's own HTTP server before it reaches the Worker; never a 500 of ours, and never
 * passed to the origin.
 */

const BODY = "hello";
const CHUNKED = "5\r\nhello\r\n0\r\n\r\n";

/** [name, framing header lines, body, who answers in workerd] */
const VARIANTS: [string, string[], string, "keygate" | "runtime"][] = [
  [
    "Content-Length: 5 and Content-Length: 7",
    ["Content-Length: 5", "Content-Length: 7"],
    BODY,
    "runtime",
  ],
  ["Content-Length: 5, 7", ["Content-Length: 5, 7"], BODY, "runtime"],
  ["Content-Length: 5 twice", ["Content-Length: 5", "Content-Length: 5"], BODY, "runtime"],
  [
    "Transfer-Encoding: chunked, chunked",
    ["Transfer-Encoding: chunked, chunked"],
    CHUNKED,
    "keygate",
  ],
  [
    "Transfer-Encoding: chunked twice",
    ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    CHUNKED,
    "keygate",
  ],
  [
    "Transfer-Encoding then Content-Length",
    ["Transfer-Encoding: chunked", "Content-Length: 5"],
    CHUNKED,
    "keygate",
  ],
  [
    "Content-Length then Transfer-Encoding",
    ["Content-Length: 5", "Transfer-Encoding: chunked"],
    CHUNKED,
    "keygate",
  ],
  ["Transfer-Encoding: chunked, gzip", ["Transfer-Encoding: chunked, gzip"], CHUNKED, "runtime"],
  ["Transfer-Encoding: identity", ["Transfer-Encoding: identity"], BODY, "runtime"],
  ["Content-Length: abc", ["Content-Length: abc"], BODY, "runtime"],
];

let keygate: Keygate;
let origin: Origin;
let key: string;

beforeAll(async () => {
  origin = await startOrigin();
  keygate = await startKeygate({
    originUrl: origin.url,
    routeRules: [{ path: "/public/*", public: true }],
  });
  const api = managementApi(keygate.url, keygate.adminToken);
  const consumer = await api.post("/consumers", { name: "framing" });
  const issued = await api.post(`/consumers/${String(consumer.body.id)}/keys`, { scopes: [] });
  key = String(issued.body.key);
});
afterAll(async () => {
  await keygate?.stop();
  await origin?.close();
});

const PATHS = [
  ["front door, with a key", "/orders/1", () => [`Authorization: Bearer ${key}`]],
  ["front door, public route", "/public/upload", () => []],
  [
    "management API",
    "/_keygate/v1/consumers",
    () => [`Authorization: Bearer ${keygate.adminToken}`],
  ],
] as const;

function send(path: string, auth: readonly string[], framing: string[], body: string) {
  const head = [
    `POST ${path} HTTP/1.1`,
    `Host: ${new URL(keygate.url).host}`,
    ...auth,
    "Content-Type: application/json",
    "Connection: close",
    ...framing,
  ].join("\r\n");
  return rawRequest(keygate.url, head, body);
}

function expectMalformedRequest(reply: RawReply) {
  expect(reply.status).toBe(400);
  expect(reply.headers.get("content-type")).toBe("application/problem+json");
  expect(reply.headers.get("keygate-error")).toBe("malformed_request");
  expect(JSON.parse(reply.body)).toMatchObject({ status: 400, code: "malformed_request" });
}

describe.each(PATHS)("ambiguous framing on the %s", (_label, path, auth) => {
  it.each(VARIANTS)("%s: refused, never proxied", async (_name, framing, body, answeredBy) => {
    const before = origin.seen.length;
    const reply = await send(path, auth(), framing, body);
    if (answeredBy === "keygate") {
      expectMalformedRequest(reply);
    } else {
      // workerd's HTTP server refuses it before any Worker code runs (a bare 500)
      expect(reply.status).toBeGreaterThanOrEqual(400);
      expect(reply.headers.has("x-request-id")).toBe(false);
    }
    expect(origin.seen.length).toBe(before);
  });

  it("still serves well-framed bodies: Content-Length, chunked, and `Chunked`", async () => {
    for (const [framing, body] of [
      [["Content-Length: 14"], '{"name":"ok"}\n'],
      [["Transfer-Encoding: chunked"], "e\r\n" + '{"name":"ok"}\n' + "\r\n0\r\n\r\n"],
      [["Transfer-Encoding: Chunked"], "e\r\n" + '{"name":"ok"}\n' + "\r\n0\r\n\r\n"],
    ] as const) {
      const reply = await send(path, auth(), [...framing], body);
      expect(reply.status, `${framing.join()}: ${reply.body}`).toBeLessThan(300);
    }
  });
});
