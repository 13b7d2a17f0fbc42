import { createExecutionContext, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { checksumOf } from "../../src/keys/key-format";
import { newKey } from "../support/api";
import { counting } from "../support/faults";

describe("storage reads on the hot path", () => {
  const kv = counting(env.KEYS);
  const db = counting(env.DB);
  const testEnv = { ...env, KEYS: kv.binding, DB: db.binding };

  async function request(secret: string) {
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request("https://keygate.test/x", { headers: { Authorization: `Bearer ${secret}` } }),
      testEnv,
      ctx,
    );
    // not waiting on ctx: its usage report is batched behind a 1 s timer
    return res;
  }

  it("refuses malformed keys and bad checksums with no storage read", async () => {
    const { key } = await newKey();
    const before = { ...kv.calls };
    for (const candidate of [
      "nope",
      key.slice(0, -1) + (key.endsWith("A") ? "B" : "A"),
      key + "x",
    ]) {
      expect((await request(candidate)).status).toBe(401);
    }
    expect(kv.calls).toEqual(before);
  });

  it("a cold key costs one KV read, a hot key none, and neither touches D1", async () => {
    const { key } = await newKey();
    const kvBefore = kv.calls.get ?? 0;
    const dbBefore = { ...db.calls };
    expect((await request(key)).status).toBe(200);
    expect(kv.calls.get! - kvBefore).toBe(1);
    for (let i = 0; i < 5; i++) expect((await request(key)).status).toBe(200);
    expect(kv.calls.get! - kvBefore).toBe(1);
    expect(db.calls).toEqual(dbBefore);
  });

  it("a well-formed secret for an unknown key costs one KV read each time (misses are not cached)", async () => {
    const body = `kg_${"0".repeat(16)}_${"A".repeat(32)}`;
    const forged = body + checksumOf(body);
    const before = kv.calls.get ?? 0;
    expect((await request(forged)).status).toBe(401);
    expect((await request(forged)).status).toBe(401);
    expect(kv.calls.get! - before).toBe(2);
  });
});
