import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";

/** How much more of a refused chunked body is read and dropped before the rest is cancelled. */
export const DISCARD_LIMIT_BYTES = 1024 * 1024;

/**
 * Refuses a request body over `maxSize` bytes with 413 `payload_too_large`: by its
 * `Content-Length` when it declares one, else by counting while it is read (a body within the
 * limit is handed on buffered).
 *
 * A body the Worker has begun to read must be finished by the Worker: hono's `bodyLimit` left
 * a refused chunked body half read, and under `wrangler dev` the next request from any client
 * then failed with 503 ("Your worker restarted mid-request"). So the rest is read and dropped,
 * up to `DISCARD_LIMIT_BYTES`, and only a body longer than that is cancelled. A body refused
 * by its `Content-Length` is left untouched: the runtime discards an unread body itself, while
 * cancelling it closed the connection and broke the next request in the same way.
 */
export function bodyLimit(maxSize: number): MiddlewareHandler<AppEnv> {
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) throw new RangeError("maxSize");
  const tooLarge = () =>
    new KeygateError("payload_too_large", {
      detail: `Request bodies are limited to ${maxSize} bytes.`,
    });
  return async function bodyLimit(c, next) {
    const body = c.req.raw.body;
    if (!body) return next();
    const headers = c.req.raw.headers;
    const declared = headers.get("content-length");
    if (declared !== null && !headers.has("transfer-encoding")) {
      if (Number(declared) > maxSize) throw tooLarge();
      return next();
    }
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxSize) {
        await discard(reader, DISCARD_LIMIT_BYTES);
        throw tooLarge();
      }
      chunks.push(value);
    }
    const buffered = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      buffered.set(chunk, offset);
      offset += chunk.byteLength;
    }
    c.req.raw = new Request(c.req.raw, { body: buffered });
    return next();
  };
}

/** Reads and drops the rest of a body, up to `limit` bytes, then cancels what is left. */
async function discard(reader: ReadableStreamDefaultReader<Uint8Array>, limit: number) {
  try {
    for (let size = 0; size <= limit;) {
      const { done, value } = await reader.read();
      if (done) return;
      size += value.byteLength;
    }
    await reader.cancel();
  } catch {
    // the client went away: nothing is left to drop
  }
}
