import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { managementApi } from "./support/http.js";
import { chunked, rawRequest } from "./support/raw-http.js";
import { startWranglerDev, type WranglerDev } from "./support/wrangler-dev.js";

/**
 * A refused request body must not break the next request under `npm start`. wrangler dev puts
 * a proxy Worker in front of Keygate (miniflare alone does not, so these tests run wrangler):
 * a body the Worker left half read (hono's bodyLimit on a chunked body over the limit) made
 * the next POST from any client fail with 503 "Your worker restarted mid-request", every time.
 * A body the Worker never touched (refused by its Content-Length, or by the front door before
 * it is proxied) is discarded by the runtime and never did.
 */

const ROUNDS = 4;
let dev: WranglerDev;

beforeAll(async () => {
  dev = await startWranglerDev();
}, 120_000);
afterAll(() => dev?.stop());

function head(method: string, path: string, headers: string[]): string {
  return [`${method} ${path} HTTP/1.1`, `Host: ${new URL(dev.url).host}`, ...headers].join("\r\n");
}

/** A POST any client might send next: it must succeed. */
async function nextPostSucceeds(round: number) {
  const api = managementApi(dev.url, dev.adminToken);
  const created = await api.post("/consumers", { name: `after ${round}` });
  expect(created.status, `round ${round}: ${JSON.stringify(created.body)}`).toBe(201);
}

const managementPost = (framing: string) =>
  head("POST", "/_keygate/v1/consumers", [
    `Authorization: Bearer ${dev.adminToken}`,
    "Content-Type: application/json",
    framing,
  ]);

describe("a refused request body does not break the next request (npm start)", () => {
  it.each([
    ["just over 64 KiB", 80 * 1024],
    ["of 900 KiB", 900 * 1024],
  ])("chunked management body %s: 413, then the next POST succeeds", async (_label, size) => {
    for (let round = 0; round < ROUNDS; round++) {
      const refused = await rawRequest(
        dev.url,
        managementPost("Transfer-Encoding: chunked"),
        chunked(JSON.stringify({ name: "x".repeat(size) })),
      );
      expect(refused.status).toBe(413);
      expect(JSON.parse(refused.body)).toMatchObject({ code: "payload_too_large" });
      await nextPostSucceeds(round);
    }
  });

  it("3 MB management body with Content-Length: 413, then the next POST succeeds", async () => {
    const body = JSON.stringify({ name: "x".repeat(3_000_000) });
    for (let round = 0; round < ROUNDS; round++) {
      const refused = await rawRequest(
        dev.url,
        managementPost(`Content-Length: ${Buffer.byteLength(body)}`),
        body,
      );
      expect(refused.status).toBe(413);
      expect(JSON.parse(refused.body)).toMatchObject({ code: "payload_too_large" });
      await nextPostSucceeds(round);
    }
  });

  it("token body over 8 KiB, chunked or not: 413, then the next POST succeeds", async () => {
    const body = JSON.stringify({ scope: "x".repeat(20 * 1024) });
    for (let round = 0; round < ROUNDS; round++) {
      const framing =
        round % 2 === 0
          ? { header: "Transfer-Encoding: chunked", body: chunked(body) }
          : { header: `Content-Length: ${Buffer.byteLength(body)}`, body };
      const refused = await rawRequest(
        dev.url,
        head("POST", "/_keygate/v1/token", [
          "Authorization: Bearer kg_live_not_a_real_key",
          "Content-Type: application/json",
          framing.header,
        ]),
        framing.body,
      );
      expect(refused.status).toBe(413);
      await nextPostSucceeds(round);
    }
  });

  it("front door: a 3 MB upload refused with 401, then the next POST succeeds", async () => {
    const body = "y".repeat(3_000_000);
    for (let round = 0; round < ROUNDS; round++) {
      const framing =
        round % 2 === 0
          ? { header: "Transfer-Encoding: chunked", body: chunked(body, 64 * 1024) }
          : { header: `Content-Length: ${body.length}`, body };
      const refused = await rawRequest(
        dev.url,
        head("POST", "/upload", ["Content-Type: application/octet-stream", framing.header]),
        framing.body,
      );
      expect(refused.status).toBe(401);
      expect(refused.headers.get("keygate-error")).toBe("missing_credentials");
      await nextPostSucceeds(round);
    }
  });
});
