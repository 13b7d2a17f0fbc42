import {
  createExecutionContext,
  createScheduledController,
  env,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { forgetJwks } from "../../src/tokens/jwks-cache";
import { NEXT_KEY_MIN_AGE_MS } from "../../src/tokens/propagation";
import type { TokenSigner } from "../../src/tokens/token-signer";
import { admin, newKey, withKey, type Json } from "../support/api";
import { failing, failingNamespace, faultSwitch } from "../support/faults";
import {
  ageNext,
  claimsOf,
  editRing,
  fetchWith,
  kidOf,
  publishedKids,
  rotateNow,
  rotateSigningKeys,
  signerStub,
  status,
  storedRing,
  tokenFor,
} from "./fixtures";

const DAY = 86_400_000;

async function auditOf(action: string): Promise<Json[]> {
  const res = await admin.get(`/audit?action=${action}&limit=100`);
  expect(res.status).toBe(200);
  return res.body.items as Json[];
}

/** Swaps the signer's vars or bindings until it is next evicted. */
async function withSignerEnv(vars: Record<string, unknown>): Promise<void> {
  await signerStub().summary();
  await runInDurableObject(signerStub(), (instance: TokenSigner) => {
    const holder = instance as unknown as { env: Record<string, unknown> };
    holder.env = { ...holder.env, ...vars };
  });
}

describe("signing-key rotation", () => {
  it("issues tokens across a rotation and no valid token ever fails", async () => {
    const issued = await newKey(["prices:read"]);
    const tokens: string[] = [];
    const signers = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const publishedBefore = await publishedKids();
      for (let i = 0; i < 3; i++) {
        const token = await tokenFor(issued.key, { expiresIn: 3600 });
        // every token is signed by a key that was already published
        expect(publishedBefore).toContain(kidOf(token));
        signers.add(kidOf(token));
        tokens.push(token);
      }
      for (const token of tokens) expect(await status(token)).toBe(200);
      await rotateNow();
      for (const token of tokens) expect(await status(token)).toBe(200);
      // another isolate, or a restarted one, sees the same
      forgetJwks();
      for (const token of tokens) expect(await status(token)).toBe(200);
    }
    expect(signers.size).toBe(4);
  });

  it("publishes next before it signs: the rotation promotes the key every verifier has", async () => {
    const before = await signerStub().summary();
    expect(await publishedKids()).toContain(before.next.kid);
    await rotateNow();
    const after = await signerStub().summary();
    expect(after.current.kid).toBe(before.next.kid);
    expect(after.previous[0]!.kid).toBe(before.current.kid);
    expect(await publishedKids()).toContain(after.next.kid);
  });

  it("refuses to promote a next key published too recently: 409 conflict with Retry-After", async () => {
    await rotateNow();
    const ring = await signerStub().summary();
    const again = await rotateSigningKeys();
    expect(again.status).toBe(409);
    expect(again.body.code).toBe("conflict");
    const retryAfter = Number(again.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(NEXT_KEY_MIN_AGE_MS / 1000);
    expect(await signerStub().summary()).toEqual(ring);
    expect(ring.next.promotableAt).toBe(ring.next.publishedAt! + NEXT_KEY_MIN_AGE_MS);
  });

  it("keeps a retired key until its longest token expires, even with the cap lowered since; then the alarm drops it", async () => {
    const issued = await newKey(["prices:read"]);
    const long = await tokenFor(issued.key, { expiresIn: 3600 });
    const signer = kidOf(long);
    await ageNext();
    // the operator lowers MAX_TOKEN_TTL_SECONDS below the lifetime of tokens already out
    await withSignerEnv({ TOKEN_TTL_SECONDS: "60", MAX_TOKEN_TTL_SECONDS: "60" });
    expect((await rotateSigningKeys()).status).toBe(200);
    const ring = await storedRing();
    const retired = ring.previous.find((k) => k.kid === signer)!;
    expect(retired.dropAfter).toBeGreaterThanOrEqual((claimsOf(long).exp! + 30) * 1000);
    const alarm = await runInDurableObject(signerStub(), (_i, state) => state.storage.getAlarm());
    expect(alarm).toBe(Math.min(...ring.previous.map((k) => k.dropAfter!)));
    // the alarm before the drop time changes nothing
    expect(await runDurableObjectAlarm(signerStub())).toBe(true);
    expect(await publishedKids()).toContain(signer);
    expect(await status(long)).toBe(200);
    // travel to the drop time
    await editRing(
      (r, now) => {
        for (const k of r.previous) k.dropAfter = now - 1;
      },
      // set in the future so that it runs when the test says, not by itself
      { alarmAt: Date.now() + 3_600_000 },
    );
    expect(await runDurableObjectAlarm(signerStub())).toBe(true);
    forgetJwks();
    expect(await publishedKids()).not.toContain(signer);
    expect((await storedRing()).previous).toEqual([]);
    expect(await status(long)).toBe(401);
    const dropped = await auditOf("signing_keys.dropped");
    expect(dropped[0]).toMatchObject({ actor: "system", target: "signing-keys" });
    expect((dropped[0]!.details as { dropped: string[] }).dropped).toContain(signer);
  });

  it("keeps retired keys at least as long as an origin assertion lives (120 s)", async () => {
    await ageNext();
    await withSignerEnv({ TOKEN_TTL_SECONDS: "10", MAX_TOKEN_TTL_SECONDS: "10" });
    const before = Date.now();
    expect((await rotateSigningKeys()).status).toBe(200);
    const retired = (await storedRing()).previous[0]!;
    expect(retired.dropAfter! - before).toBeGreaterThanOrEqual((120 + 30) * 1000);
  });

  it("emergency: replaces every key at once, the stored next included", async () => {
    const issued = await newKey(["prices:read"]);
    await rotateNow();
    const oldToken = await tokenFor(issued.key);
    const before = await signerStub().summary();
    const oldKids = [before.current.kid, before.next.kid, ...before.previous.map((k) => k.kid)];
    expect(await status(oldToken)).toBe(200);

    const res = await rotateSigningKeys(true);
    expect(res.status).toBe(200);
    const after = await signerStub().summary();
    expect(oldKids).not.toContain(after.current.kid);
    expect(oldKids).not.toContain(after.next.kid);
    expect(after.previous).toEqual([]);
    // this isolate at once
    expect(await status(oldToken)).toBe(401);
    const published = await publishedKids();
    for (const kid of oldKids) expect(published).not.toContain(kid);
    const newToken = await tokenFor(issued.key);
    expect(kidOf(newToken)).toBe(after.current.kid);
    expect(await status(newToken)).toBe(200);

    const [event] = await auditOf("signing_keys.emergency_rotated");
    expect(event).toMatchObject({ actor: "admin", target: "signing-keys" });
    expect(event!.requestId).toBe(res.headers.get("X-Request-Id"));
    expect((event!.details as { dropped: string[] }).dropped.sort()).toEqual([...oldKids].sort());
  });

  it("writes an audit event for every rotation, with the admin and request id", async () => {
    const res = await rotateNow();
    const [event] = await auditOf("signing_keys.rotated");
    expect(event).toMatchObject({
      actor: "admin",
      action: "signing_keys.rotated",
      target: "signing-keys",
    });
    expect(event!.details).toMatchObject({
      trigger: "request",
      current: (res.current as Json).kid,
      next: (res.next as Json).kid,
    });
  });

  it("an audit write that fails is kept by the signer and written by its alarm", async () => {
    await ageNext();
    const fault = faultSwitch();
    await withSignerEnv({ DB: failing(env.DB, ["batch"], fault) });
    const before = (await auditOf("signing_keys.rotated")).length;
    const res = await rotateSigningKeys();
    expect(res.status).toBe(200);
    expect(fault.refused).toBeGreaterThan(0);
    expect(await auditOf("signing_keys.rotated")).toHaveLength(before);
    fault.on = false;
    expect(await runDurableObjectAlarm(signerStub())).toBe(true);
    expect(await auditOf("signing_keys.rotated")).toHaveLength(before + 1);
  });

  it("the cron rotates when the current key is due, and only then", async () => {
    const run = async () => {
      const ctx = createExecutionContext();
      await worker.scheduled!(
        createScheduledController({ cron: "*/15 * * * *", scheduledTime: Date.now() }),
        env,
        ctx,
      );
      await waitOnExecutionContext(ctx);
    };
    await ageNext();
    const fresh = await signerStub().summary();
    await run();
    expect((await signerStub().summary()).current.kid).toBe(fresh.current.kid);

    // due (older than SIGNING_KEY_ROTATION_DAYS) but next too recently published: deferred
    await editRing((ring, now) => {
      ring.current.activatedAt = now - 31 * DAY;
      ring.next.publishedAt = now - 1000;
    });
    await run();
    expect((await signerStub().summary()).current.kid).toBe(fresh.current.kid);

    await editRing((ring, now) => {
      ring.next.publishedAt = now - NEXT_KEY_MIN_AGE_MS - 1000;
    });
    await run();
    const rotated = await signerStub().summary();
    expect(rotated.current.kid).toBe(fresh.next.kid);
    const [event] = await auditOf("signing_keys.rotated");
    expect(event).toMatchObject({ actor: "system" });
    expect(event!.details).toMatchObject({ trigger: "cron", retired: fresh.current.kid });
  });

  it("cron and alarm at once rotate once", async () => {
    const before = await editRing(
      (ring, now) => {
        ring.current.activatedAt = now - 31 * DAY;
        ring.next.publishedAt = now - NEXT_KEY_MIN_AGE_MS - 1000;
      },
      { alarmAt: Date.now() + 60_000 },
    );
    const events = (await auditOf("signing_keys.rotated")).length;
    const [cron, alarmRan, again] = await Promise.all([
      signerStub().maintain("cron"),
      runDurableObjectAlarm(signerStub()),
      signerStub().maintain("cron"),
    ]);
    expect(alarmRan).toBe(true);
    // whichever ran first rotated; the others found nothing due
    expect([cron.rotated, again.rotated].filter(Boolean).length).toBeLessThanOrEqual(1);
    const after = await storedRing();
    expect(after.current.kid).toBe(before.next.kid);
    expect(after.previous.filter((k) => k.kid === before.next.kid)).toEqual([]);
    expect(after.previous.map((k) => k.kid)).toContain(before.current.kid);
    expect(await auditOf("signing_keys.rotated")).toHaveLength(events + 1);
  });

  it("answers 503 when the signer cannot be reached", async () => {
    const fault = faultSwitch();
    const SIGNER = failingNamespace(env.SIGNER, fault);
    const auth = { Authorization: `Bearer ${env.ADMIN_TOKEN}`, "Content-Type": "application/json" };
    const rotate = await fetchWith({ SIGNER }, "/_keygate/v1/signing-keys/rotate", {
      method: "POST",
      headers: auth,
      body: "{}",
    });
    expect(rotate.status).toBe(503);
    const list = await fetchWith({ SIGNER }, "/_keygate/v1/signing-keys", { headers: auth });
    expect(list.status).toBe(503);
    expect(fault.refused).toBe(2);
  });

  it("lists the ring for keygate:read, and rotating needs keygate:admin", async () => {
    const reader = await newKey(["keygate:read"]);
    const list = await withKey(reader.key, "/_keygate/v1/signing-keys");
    expect(list.status).toBe(200);
    const body = (await list.json()) as Json;
    expect(body).toMatchObject({ current: { alg: "ES256" }, next: { alg: "ES256" } });
    expect(JSON.stringify(body)).not.toMatch(/"d"|privateJwk/);
    const rotate = await withKey(reader.key, "/_keygate/v1/signing-keys/rotate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    expect(rotate.status).toBe(403);
  });

  it("SIGNING_ALG=EdDSA: keys made from then on sign EdDSA tokens that verify", async () => {
    const issued = await newKey(["prices:read"]);
    const before = await tokenFor(issued.key);
    await withSignerEnv({ SIGNING_ALG: "EdDSA" });
    // an emergency makes both new keys at once; a scheduled rotation would take two
    expect((await rotateSigningKeys(true)).status).toBe(200);
    const token = await tokenFor(issued.key);
    expect(decodeProtectedHeader(token).alg).toBe("EdDSA");
    expect(await status(token)).toBe(200);
    expect(await status(before)).toBe(401);
    expect((await storedRing()).current.publicJwk).toMatchObject({ kty: "OKP", crv: "Ed25519" });
  });
});
