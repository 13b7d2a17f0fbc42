import { DurableObject } from "cloudflare:workers";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWTPayload } from "jose";
import { configFor } from "../config";
import { SerialQueue } from "../coordinator/serial-queue";
import type { Bindings } from "../env";
import { newId } from "../keys/random";
import {
  newRing,
  nextDrop,
  publicJwks,
  pruneRing,
  rotateRing,
  rotationDue,
  type KeyRing,
  type SigningAlgorithm,
  type SigningKey,
} from "./key-ring";

/** Where the public JWKS is published for the edge (one read per isolate per minute). */
export const JWKS_KV_KEY = "jwks:v1";
/** Clock tolerance allowed to verifiers, added to how long retired keys stay published. */
export const CLOCK_TOLERANCE_SECONDS = 30;
const RING_KEY = "ring";

export interface SignRequest {
  claims: JWTPayload;
  typ: string;
  ttlSeconds: number;
}

export interface RingSummary {
  current: { kid: string; alg: string; activatedAt: number | null };
  next: { kid: string; alg: string };
  previous: { kid: string; alg: string; retiredAt: number | null; dropAfter: number | null }[];
}

function summarize(ring: KeyRing): RingSummary {
  return {
    current: {
      kid: ring.current.kid,
      alg: ring.current.alg,
      activatedAt: ring.current.activatedAt,
    },
    next: { kid: ring.next.kid, alg: ring.next.alg },
    previous: ring.previous.map((k) => ({
      kid: k.kid,
      alg: k.alg,
      retiredAt: k.retiredAt,
      dropAfter: k.dropAfter,
    })),
  };
}

/**
 * The one Durable Object that holds the signing keys (`SIGNER`, instance `signing-keys`).
 * Private keys exist only in its storage and memory; it signs access tokens and origin
 * assertions, rotates the ring on schedule or on demand, and publishes the public JWKS to KV.
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
      activatedAt: null,
      retiredAt: null,
      dropAfter: null,
    };
  }

  #keepMs(): number {
    return (configFor(this.env).tokens.maxTtlSeconds + CLOCK_TOLERANCE_SECONDS) * 1000;
  }

  async #save(ring: KeyRing): Promise<void> {
    await this.ctx.storage.put(RING_KEY, ring);
    this.#ring = ring;
    await this.#publish(ring);
    const drop = nextDrop(ring);
    if (drop !== null) await this.ctx.storage.setAlarm(drop);
  }

  async #publish(ring: KeyRing): Promise<void> {
    await this.env.KEYS.put(JWKS_KV_KEY, JSON.stringify(publicJwks(ring)));
  }

  /** The ring, created on first use. */
  async #load(): Promise<KeyRing> {
    if (this.#ring) return this.#ring;
    const stored = await this.ctx.storage.get<KeyRing>(RING_KEY);
    if (stored) return (this.#ring = stored);
    const alg = configFor(this.env).tokens.algorithm;
    const ring = newRing(await this.#newKey(alg), await this.#newKey(alg), Date.now());
    await this.#save(ring);
    return ring;
  }

  async #privateKey(key: SigningKey): Promise<CryptoKey> {
    let imported = this.#privateKeys.get(key.kid);
    if (!imported) {
      imported = (await importJWK(key.privateJwk, key.alg)) as CryptoKey;
      this.#privateKeys.set(key.kid, imported);
    }
    return imported;
  }

  /** Signs a JWT with the current key (`kid` in the header). */
  async sign(request: SignRequest): Promise<string> {
    const ring = await this.#queue.run(() => this.#load());
    const key = ring.current;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(request.claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: request.typ })
      .setIssuedAt(now)
      .setExpirationTime(now + request.ttlSeconds)
      .sign(await this.#privateKey(key));
  }

  /** The public JWKS (and publishes it to KV, so a cold edge can read it from there). */
  async jwks(): Promise<{ keys: unknown[] }> {
    const ring = await this.#queue.run(() => this.#load());
    return publicJwks(ring);
  }

  async summary(): Promise<RingSummary> {
    return summarize(await this.#queue.run(() => this.#load()));
  }

  /**
   * Rotates: next starts signing, current is kept for verification until the longest token
   * it signed has expired. `emergency` drops current at once: its tokens stop verifying.
   */
  async rotate(emergency: boolean): Promise<RingSummary> {
    return this.#queue.run(async () => {
      const ring = await this.#load();
      const fresh = await this.#newKey(configFor(this.env).tokens.algorithm);
      const rotated = rotateRing(ring, fresh, Date.now(), this.#keepMs(), emergency);
      if (emergency) this.#privateKeys.delete(ring.current.kid);
      await this.#save(rotated);
      return summarize(rotated);
    });
  }

  /** Scheduled upkeep: rotate when the current key is due, drop expired retired keys. */
  async maintain(): Promise<{ rotated: boolean; dropped: number }> {
    const periodMs = configFor(this.env).tokens.rotationDays * 86_400_000;
    const ring = await this.#queue.run(() => this.#load());
    if (rotationDue(ring, Date.now(), periodMs)) {
      await this.rotate(false);
      return { rotated: true, dropped: 0 };
    }
    return this.#queue.run(async () => {
      const current = await this.#load();
      const pruned = pruneRing(current, Date.now());
      const dropped = current.previous.length - pruned.previous.length;
      if (dropped > 0) await this.#save(pruned);
      else await this.#publish(current);
      return { rotated: false, dropped };
    });
  }

  override async alarm(): Promise<void> {
    await this.maintain();
  }
}

/** The signer's stub. */
export function signerOf(env: Bindings) {
  return env.SIGNER.get(env.SIGNER.idFromName("signing-keys"));
}
