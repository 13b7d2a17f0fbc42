import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  cursorKey,
  loadCursorKey,
  openCursor,
  sealCursor,
  SIGNED_CURSOR,
} from "../../src/store/cursors";
import { encodeCursor } from "../../src/store/pagination";
import { settingOrInsert } from "../../src/store/settings";

const hmacKey = () =>
  crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]) as Promise<CryptoKey>;

const position = encodeCursor({ at: 1_767_225_600_000, id: "csm_0123456789abcdef" });

describe("signed cursors", () => {
  it("opens a cursor it sealed, for the same list and key only", async () => {
    const key = await hmacKey();
    const cursor = await sealCursor(key, "consumers", position);
    expect(cursor).toMatch(SIGNED_CURSOR);
    expect(await openCursor(key, "consumers", cursor)).toBe(position);
    expect(await openCursor(key, "audit", cursor)).toBeNull();
    expect(await openCursor(key, "consumers/csm_a/keys", cursor)).toBeNull();
    expect(await openCursor(await hmacKey(), "consumers", cursor)).toBeNull();
  });

  it("refuses every other spelling of the tag, the unused bits of its last character too", async () => {
    const key = await hmacKey();
    const cursor = await sealCursor(key, "consumers", position);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (const ch of alphabet) {
      const spelled = cursor.slice(0, -1) + ch;
      if (spelled !== cursor) expect(await openCursor(key, "consumers", spelled), ch).toBeNull();
    }
  });

  it("refuses a correctly tagged position that is not a position", async () => {
    const key = await hmacKey();
    const cursor = await sealCursor(key, "consumers", "bm90IGEgcG9zaXRpb24");
    expect(await openCursor(key, "consumers", cursor)).toBeNull();
  });

  it("makes one key per deployment, kept in D1: every isolate signs alike", async () => {
    // two loads stand for two isolates' first use
    const [first, second] = await Promise.all([loadCursorKey(env.DB), loadCursorKey(env.DB)]);
    const cursor = await sealCursor(first, "consumers", position);
    expect(await openCursor(second, "consumers", cursor)).toBe(position);
    expect(await openCursor(await loadCursorKey(env.DB), "consumers", cursor)).toBe(position);
    const row = await env.DB.prepare("SELECT value FROM settings WHERE name = 'cursor_key'").first<{
      value: string;
    }>();
    expect(atob(row!.value.replaceAll("-", "+").replaceAll("_", "/"))).toHaveLength(32);
  });

  it("caches the key per isolate", async () => {
    expect(cursorKey(env.DB)).toBe(cursorKey(env.DB));
  });
});

describe("settingOrInsert", () => {
  it("keeps the first value stored: concurrent first uses all get it", async () => {
    const values = await Promise.all(
      ["a", "b", "c", "d"].map((value) => settingOrInsert(env.DB, "test_setting", value)),
    );
    expect(new Set(values).size).toBe(1);
    expect(await settingOrInsert(env.DB, "test_setting", "later")).toBe(values[0]);
  });
});
