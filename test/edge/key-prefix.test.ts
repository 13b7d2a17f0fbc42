import { createExecutionContext, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { generateSecret, newKeyId, parseSecret } from "../../src/keys/key-format";
import { newKey } from "../support/api";

describe("KEY_PREFIX names new secrets only", () => {
  it("parseSecret without a prefix accepts every valid prefix and still checks the checksum", () => {
    for (const prefix of ["kg", "live", "t", "a0123456789abcde"]) {
      const keyId = newKeyId();
      const key = generateSecret(prefix, keyId);
      expect(parseSecret(key)).toEqual({ prefix, keyId, secret: key });
      expect(parseSecret(key.slice(0, -1) + (key.endsWith("A") ? "B" : "A"))).toBeNull();
    }
    const key = generateSecret("kg", newKeyId());
    for (const bad of [`KG${key.slice(2)}`, `9g${key.slice(2)}`, `_${key.slice(2)}`]) {
      expect(parseSecret(bad)).toBeNull();
    }
  });

  it("a key issued under one prefix keeps working after KEY_PREFIX changes", async () => {
    const { key } = await newKey([]);
    expect(key.startsWith("kg_")).toBe(true);
    const res = await worker.fetch(
      new Request("https://keygate.test/anything", { headers: { "X-API-Key": key } }),
      { ...env, KEY_PREFIX: "live" },
      createExecutionContext(),
    );
    expect(res.status).toBe(200);
  });
});
