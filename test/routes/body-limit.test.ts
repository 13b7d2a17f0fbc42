import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { AppEnv } from "../../src/env";
import { KeygateError } from "../../src/errors";
import { bodyLimit, DISCARD_LIMIT_BYTES } from "../../src/routes/body-limit";

const LIMIT = 1024;
const CHUNK = 256;

/** A body of `chunks` chunks of 256 bytes, sent without a Content-Length (chunked). */
function streamed(chunks: number) {
  const seen = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (seen.pulled === chunks * CHUNK) return controller.close();
      seen.pulled += CHUNK;
      controller.enqueue(new Uint8Array(CHUNK).fill(120));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { body, seen };
}

function app() {
  const app = new Hono<AppEnv>();
  app.onError((error) =>
    error instanceof KeygateError
      ? new Response(error.code, { status: error.status })
      : new Response("boom", { status: 500 }),
  );
  app.post("/", bodyLimit(LIMIT), async (c) =>
    c.text(String((await c.req.arrayBuffer()).byteLength)),
  );
  return app;
}

const post = (body: BodyInit, headers: Record<string, string> = {}) =>
  app().request("/", { method: "POST", body, headers });

describe("bodyLimit", () => {
  it("hands a body within the limit on whole, streamed or with Content-Length", async () => {
    const { body } = streamed(LIMIT / CHUNK);
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(String(LIMIT));
    expect(await (await post("x".repeat(LIMIT))).text()).toBe(String(LIMIT));
  });

  it("refuses a streamed body over the limit with 413 after reading the rest of it", async () => {
    const { body, seen } = streamed(40);
    const res = await post(body);
    expect(res.status).toBe(413);
    expect(await res.text()).toBe("payload_too_large");
    expect(seen.pulled).toBe(40 * CHUNK);
    expect(seen.cancelled).toBe(false);
  });

  it("cancels a streamed body once more than the discard bound is left", async () => {
    const chunks = (LIMIT + DISCARD_LIMIT_BYTES) / CHUNK + 100;
    const { body, seen } = streamed(chunks);
    const res = await post(body);
    expect(res.status).toBe(413);
    expect(seen.cancelled).toBe(true);
    expect(seen.pulled).toBeLessThan(chunks * CHUNK);
  });

  it("refuses by Content-Length without reading the body", async () => {
    const { body, seen } = streamed(40);
    const res = await post(body, { "Content-Length": String(40 * CHUNK) });
    expect(res.status).toBe(413);
    // a stream source is pulled ahead by its high-water mark: never more than that
    expect(seen.pulled).toBeLessThanOrEqual(CHUNK);
    expect(seen.cancelled).toBe(false);
  });
});
