import { DurableObject } from "cloudflare:workers";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWTPayload } from "jose";
import { configFor } from "../config";
import { SerialQueue } from "../serial-queue";
import type { Bindings } from "../env";
import { newId } from "../keys/random";
import { ASSERTION_TTL_SECONDS, CLOCK_TOLERANCE_SECONDS } from "../origin/assertion-format.js";
import { insertAudit, newAuditEvent, type AuditContext, type AuditEvent } from "../store/audit";
import {
  markPublished,
  newRing,
  nextDrop,
  normalizeRing,
  promotableAt,
  publicJwks,
  pruneRing,
  recordSigned,
  replaceRing,
  rotateRing,
  rotationDue,
  type KeyRing,
  type Retention,
  type SigningAlgorithm,
  type SigningKey,
} from "./key-ring";
import { NEXT_KEY_MIN_AGE_MS } from "./propagation";
import { logError, logInfo } from "../log";

/** Where the public JWKS is published for the edge (one read per isolate per minute). */
export const JWKS_KV_KEY = "jwks:v1";
const RING_KEY = "ring";
/** Audit events written with a ring change and not yet copied to D1. */
const OUTBOX_PREFIX = "audit:";
const OUTBOX_RETRY_MS = 30_000;

export interface SignRequest {
  claims: JWTPayload;
  typ: string;
  ttlSeconds: number;
  /** epoch seconds the token must not outlive (the key version's expiry) */
  notAfter?: number;
}

export interface SignedToken {
  token: string;
  kid: string;
  /** epoch seconds */
  issuedAt: number;
  expiresAt: number;
}

export interface RingSummary {
  current: { kid: string; alg: string; activatedAt: number | null };
  next: { kid: string; alg: string; publishedAt: number | null; promotableAt: number | null };
  previous: { kid: string; alg: string; retiredAt: number | null; dropAfter: number | null }[];
}

export type RotateOutcome =
  | { ok: true; ring: RingSummary; retired: string[]; dropped: string[] }
  | { ok: false; code: "conflict"; detail: string; retryAt: number };

export interface MaintainResult {
  rotated: boolean;
  /** a rotation was due but next was published too recently: retried on the next run */
  deferredUntil: number | null;
  dropped: string[];
}

/** Who changes the ring when no request does (cron, alarm, first use). */
const SYSTEM: AuditContext = { actor: "system", requestId: null };

function summarize(ring: KeyRing): RingSummary {
  return {
    current: {
      kid: ring.current.kid,
      alg: ring.current.alg,
      activatedAt: ring.current.activatedAt,
    },
    next: {
      kid: ring.next.kid,
      alg: ring.next.alg,
      publishedAt: ring.next.publishedAt,
      promotableAt: promotableAt(ring, NEXT_KEY_MIN_AGE_MS),
    },
    previous: ring.previous.map((k) => ({
      kid: k.kid,
      alg: k.alg,
      retiredAt: k.retiredAt,
      dropAfter: k.dropAfter,
    })),
  };
}

const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString());

/**
 * The one Durable Object that holds the signing keys (`SIGNER`, instance `signing-keys`).
 * Private keys exist only in its storage and memory; it signs access tokens and origin
 * assertions, rotates the ring on schedule or on demand, and publishes the public JWKS to KV.
 * Every step that reads the ring and changes it, signing included, runs in one serial queue,
 * so a cron run, an alarm and a request can never interleave.
 */
export class TokenSigner extends DurableObject<Bindings> {
  #queue = new SerialQueue();
  #ring: KeyRing | null = null;
  #privateKeys = new Map<string, CryptoKey>();

  async #newKey(alg: SigningAlgorithm): Promise<SigningKey> {
    const pair = await generateKeyPair(alg, { extractable: true });
    return {
      kid: newId("sk", 16),
      alg,
      publicJwk: await exportJWK(pair.publicKey),
      privateJwk: await exportJWK(pair.privateKey),
      createdAt: Date.now(),
      publishedAt: null,
      activatedAt: null,
      longestTtlSeconds: 0,
      retiredAt: null,
      dropAfter: null,
    };
  }

  /** The longest lifetime anything may be signed with: tokens or assertions. */
  #maxTtlSeconds(): number {
    return Math.max(configFor(this.env).tokens.maxTtlSeconds, ASSERTION_TTL_SECONDS);
  }

  #retention(): Retention {
    return { maxTtlSeconds: this.#maxTtlSeconds(), toleranceSeconds: CLOCK_TOLERANCE_SECONDS };
  }

  /**
   * Makes `ring` the ring: the JWKS goes to KV first (a failure changes nothing), then the
   * ring and its audit events are stored in one write, then the events are copied to D1
   * (retried by the alarm until they are).
   */
  async #commit(ring: KeyRing, events: AuditEvent[]): Promise<KeyRing> {
    await this.env.KEYS.put(JWKS_KV_KEY, JSON.stringify(publicJwks(ring)));
    const published = markPublished(ring, Date.now());
    const entries: Record<string, unknown> = { [RING_KEY]: published };
    for (const event of events) entries[`${OUTBOX_PREFIX}${event.id}`] = event;
    await this.ctx.storage.put(entries);
    this.#ring = published;
    for (const kid of this.#privateKeys.keys()) {
      if (![published.current, published.next].some((k) => k.kid === kid)) {
        this.#privateKeys.delete(kid);
      }
    }
    const pending = await this.#flushAudit();
    await this.#schedule(published, pending);
    return published;
  }

  /** Copies stored audit events to D1; answers whether some are still waiting. */
  async #flushAudit(): Promise<boolean> {
    const outbox = await this.ctx.storage.list<AuditEvent>({ prefix: OUTBOX_PREFIX });
    if (outbox.size === 0) return false;
    try {
      await this.env.DB.batch([...outbox.values()].map((event) => insertAudit(this.env.DB, event)));
    } catch (error) {
      logError("signer_audit_failed", { error });
      return true;
    }
    await this.ctx.storage.delete([...outbox.keys()]);
    return false;
  }

  async #schedule(ring: KeyRing, auditPending: boolean): Promise<void> {
    const at = [nextDrop(ring), auditPending ? Date.now() + OUTBOX_RETRY_MS : null].filter(
      (t): t is number => t !== null,
    );
    if (at.length > 0) await this.ctx.storage.setAlarm(Math.min(...at));
  }

  #event(
    audit: AuditContext,
    trigger: string,
    action: string,
    details: Record<string, unknown>,
  ): AuditEvent {
    return newAuditEvent(
      audit,
      Date.now(),
      action,
      { consumerId: null, keyId: null, target: "signing-keys" },
      { trigger, ...details },
    );
  }

  /** The ring, created (and published) on first use. Call inside the queue. */
  async #load(): Promise<KeyRing> {
    if (this.#ring) return this.#ring;
    const stored = await this.ctx.storage.get<KeyRing>(RING_KEY);
    if (stored) return (this.#ring = normalizeRing(stored));
    const alg = configFor(this.env).tokens.algorithm;
    const ring = newRing(await this.#newKey(alg), await this.#newKey(alg), Date.now());
    return this.#commit(ring, [
      this.#event(SYSTEM, "first_use", "signing_keys.created", {
        current: ring.current.kid,
        next: ring.next.kid,
      }),
    ]);
  }

  async #privateKey(key: SigningKey): Promise<CryptoKey> {
    let imported = this.#privateKeys.get(key.kid);
    if (!imported) {
      imported = (await importJWK(key.privateJwk, key.alg)) as CryptoKey;
      this.#privateKeys.set(key.kid, imported);
    }
    return imported;
  }

  /**
   * Signs a JWT with the current key (`kid` in the header). The lifetime is capped by
   * `max(MAX_TOKEN_TTL_SECONDS, assertion TTL)` and by `notAfter`; the key remembers the
   * longest lifetime it signed, so it stays published long enough once it retires.
   */
  async sign(request: SignRequest): Promise<SignedToken> {
    return this.#queue.run(async () => {
      const ring = await this.#load();
      const key = ring.current;
      const issuedAt = Math.floor(Date.now() / 1000);
      let expiresAt = issuedAt + Math.min(Math.max(1, request.ttlSeconds), this.#maxTtlSeconds());
      if (request.notAfter !== undefined) expiresAt = Math.min(expiresAt, request.notAfter);
      if (expiresAt <= issuedAt) throw new Error("refusing to sign a token expired at birth");
      const noted = recordSigned(ring, key.kid, expiresAt - issuedAt);
      if (noted) {
        await this.ctx.storage.put(RING_KEY, noted);
        this.#ring = noted;
      }
      const token = await new SignJWT(request.claims)
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: request.typ })
        .setIssuedAt(issuedAt)
        .setExpirationTime(expiresAt)
        .sign(await this.#privateKey(key));
      return { token, kid: key.kid, issuedAt, expiresAt };
    });
  }

  /** The public JWKS, straight from the ring (strongly consistent, unlike KV). */
  async jwks(): Promise<{ keys: unknown[] }> {
    return publicJwks(await this.#queue.run(() => this.#load()));
  }

  async summary(): Promise<RingSummary> {
    return summarize(await this.#queue.run(() => this.#load()));
  }

  /** Rotates; call inside the queue. */
  async #rotate(
    ring: KeyRing,
    emergency: boolean,
    audit: AuditContext,
    trigger: string,
  ): Promise<RotateOutcome> {
    const now = Date.now();
    const alg = configFor(this.env).tokens.algorithm;
    if (emergency) {
      const replaced = replaceRing(ring, await this.#newKey(alg), await this.#newKey(alg), now);
      const saved = await this.#commit(replaced.ring, [
        this.#event(audit, trigger, "signing_keys.emergency_rotated", {
          current: replaced.ring.current.kid,
          next: replaced.ring.next.kid,
          dropped: replaced.dropped,
        }),
      ]);
      return { ok: true, ring: summarize(saved), retired: [], dropped: replaced.dropped };
    }
    const readyAt = promotableAt(ring, NEXT_KEY_MIN_AGE_MS);
    if (readyAt === null || readyAt > now) {
      const retryAt = readyAt ?? now + NEXT_KEY_MIN_AGE_MS;
      return {
        ok: false,
        code: "conflict",
        retryAt,
        detail: `The next signing key was published too recently for every verifier to know it; rotate again after ${iso(retryAt)}, or use an emergency rotation.`,
      };
    }
    const rotated = rotateRing(ring, await this.#newKey(alg), now, this.#retention());
    const pruned = pruneRing(rotated, now);
    const retired = rotated.previous[0]!;
    const saved = await this.#commit(pruned.ring, [
      this.#event(audit, trigger, "signing_keys.rotated", {
        current: rotated.current.kid,
        next: rotated.next.kid,
        retired: retired.kid,
        retiredDropAfter: iso(retired.dropAfter),
        dropped: pruned.dropped,
      }),
    ]);
    return { ok: true, ring: summarize(saved), retired: [retired.kid], dropped: pruned.dropped };
  }

  /**
   * Rotates now. A scheduled rotation promotes next (refused with `conflict` while next is
   * younger than `NEXT_KEY_MIN_AGE_MS`) and keeps current published until its longest token
   * has expired. `emergency` replaces every key at once: tokens and assertions they signed
   * stop verifying.
   */
  async rotate(emergency: boolean, audit: AuditContext): Promise<RotateOutcome> {
    return this.#queue.run(async () =>
      this.#rotate(await this.#load(), emergency, audit, "request"),
    );
  }

  /**
   * Scheduled upkeep (cron and alarm), one serialised step: rotate when the current key is
   * due and next is old enough, else drop retired keys whose tokens have all expired; copy
   * waiting audit events to D1; publish the JWKS again (heals a lost KV record).
   */
  async maintain(trigger: "cron" | "alarm" = "cron"): Promise<MaintainResult> {
    return this.#queue.run(async () => {
      const ring = await this.#load();
      const now = Date.now();
      const periodMs = configFor(this.env).tokens.rotationDays * 86_400_000;
      if (rotationDue(ring, now, periodMs)) {
        const outcome = await this.#rotate(ring, false, SYSTEM, trigger);
        if (outcome.ok) return { rotated: true, deferredUntil: null, dropped: outcome.dropped };
        logInfo("signing_key_rotation_deferred", { until: outcome.retryAt });
        const waited = await this.#prune(ring, now, trigger);
        return { rotated: false, deferredUntil: outcome.retryAt, dropped: waited };
      }
      return {
        rotated: false,
        deferredUntil: null,
        dropped: await this.#prune(ring, now, trigger),
      };
    });
  }

  async #prune(ring: KeyRing, now: number, trigger: string): Promise<string[]> {
    const pruned = pruneRing(ring, now);
    if (pruned.dropped.length > 0) {
      await this.#commit(pruned.ring, [
        this.#event(SYSTEM, trigger, "signing_keys.dropped", { dropped: pruned.dropped }),
      ]);
    } else {
      await this.#commit(ring, []);
    }
    return pruned.dropped;
  }

  override async alarm(): Promise<void> {
    await this.maintain("alarm");
  }
}

/** The signer's stub. */
export function signerOf(env: Bindings) {
  return env.SIGNER.get(env.SIGNER.idFromName("signing-keys"));
}
