import { decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import type { Config } from "../config";
import type { RateLimit } from "../domain/key-state";
import type { Bindings } from "../env";
import type { SecretRecord } from "../domain/secret-record";
import { INVALID_KEY, KEY_EXPIRED, type Verdict } from "../domain/verdict";
import {
  CLOCK_TOLERANCE_SECONDS,
  MAX_JWT_LENGTH,
  SIGNING_ALGORITHMS,
} from "../origin/assertion-format.js";
import { hashSecret } from "../keys/hash";
import { jwksGeneration, verificationKey } from "./jwks-cache";

/** `typ` of Keygate access tokens (RFC 9068). Origin assertions have their own. */
export const ACCESS_TOKEN_TYPE = "at+jwt";
/** Header members that would let a token choose its own key: refused outright. */
const FORBIDDEN_HEADERS = ["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "enc", "zip"];
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The claims of a Keygate access token (docs/tokens.md, lists them). */
export interface AccessTokenClaims extends JWTPayload {
  sub: string;
  /** consumer id */
  cid: string;
  /** key version the token was issued from */
  ver: number;
  /** space-separated scopes */
  scope: string;
  /** rate limit and monthly quota at issue time, so verifying needs no read */
  rl?: RateLimit | null;
  mq?: number | null;
}

/** Whether a credential has the shape of a compact JWS (three base64url parts, `eyJ…`). */
export function looksLikeJwt(credential: string): boolean {
  return credential.startsWith("eyJ") && JWS_SHAPE.test(credential);
}

/**
 * Tokens this isolate has verified, by SHA-256 of the token (never the token itself): a
 * token seen again skips the signature check, which is most of a JWT's cost. An entry holds
 * as long as a check would accept the token (its `exp` plus the clock tolerance) and only
 * while the JWKS copy it was verified against is the one in hand, so a reload (every minute,
 * or at once after an emergency rotation made here) makes every token prove itself again.
 */
export const MAX_VERIFIED_TOKENS = 10_000;
const verifiedTokens = new Map<string, { verdict: Verdict; generation: number; until: number }>();

function remember(hash: string, verdict: Verdict, generation: number, until: number): void {
  if (verifiedTokens.size >= MAX_VERIFIED_TOKENS) {
    const oldest = verifiedTokens.keys().next();
    if (!oldest.done) verifiedTokens.delete(oldest.value);
  }
  verifiedTokens.set(hash, { verdict, generation, until });
}

/**
 * Verifies a Keygate access token with no storage read (public keys are cached in the
 * isolate): size cap, header checks, explicit algorithm allowlist, `typ`, `iss`, `aud`,
 * `exp`/`nbf` with a small clock tolerance. An expired token is `key_expired`; every other
 * failure is `invalid_key`.
 */
export async function verifyAccessToken(
  env: Bindings,
  config: Config,
  token: string,
  now: number,
): Promise<Verdict> {
  // the shape was checked by looksLikeJwt, which is how a credential gets here
  if (token.length > MAX_JWT_LENGTH) return INVALID_KEY;
  const hash = hashSecret(token);
  const seen = verifiedTokens.get(hash);
  if (seen !== undefined) {
    if (seen.generation === jwksGeneration(now) && now < seen.until) return seen.verdict;
    verifiedTokens.delete(hash);
  }
  return verifySignature(env, config, token, hash, now);
}

async function verifySignature(
  env: Bindings,
  config: Config,
  token: string,
  hash: string,
  now: number,
): Promise<Verdict> {
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return INVALID_KEY;
  }
  if (FORBIDDEN_HEADERS.some((name) => name in header)) return INVALID_KEY;
  if (typeof header.alg !== "string" || !SIGNING_ALGORITHMS.includes(header.alg))
    return INVALID_KEY;
  if (typeof header.kid !== "string" || header.typ !== ACCESS_TOKEN_TYPE) return INVALID_KEY;
  const key = await verificationKey(env, header.kid, now);
  if (!key || key.alg !== header.alg) return INVALID_KEY;
  const generation = jwksGeneration(now);
  let payload: AccessTokenClaims;
  try {
    const verified = await jwtVerify<AccessTokenClaims>(token, key.key, {
      algorithms: [key.alg],
      issuer: config.tokens.issuer,
      audience: config.tokens.audience,
      typ: ACCESS_TOKEN_TYPE,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ["sub", "exp", "iat"],
    });
    payload = verified.payload;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return code === "ERR_JWT_EXPIRED" ? KEY_EXPIRED : INVALID_KEY;
  }
  if (
    typeof payload.cid !== "string" ||
    typeof payload.ver !== "number" ||
    typeof payload.scope !== "string"
  ) {
    return INVALID_KEY;
  }
  const expiresAt = (payload.exp ?? 0) * 1000;
  const record: SecretRecord = {
    hash: "",
    keyId: payload.sub,
    consumerId: payload.cid,
    version: payload.ver,
    status: "active",
    scopes: payload.scope === "" ? [] : payload.scope.split(" "),
    expiresAt,
    graceUntil: null,
    rotatedAt: null,
    awaitingFirstUse: false,
    rateLimit: payload.rl ?? null,
    monthlyQuota: payload.mq ?? null,
  };
  const verdict: Verdict = { ok: true, record, deprecation: null };
  // held as long as jwtVerify would accept it (exp plus the tolerance), so a token in its
  // last tolerated seconds is not checked in full on every request
  const acceptedUntil = expiresAt + CLOCK_TOLERANCE_SECONDS * 1000;
  if (generation !== null) remember(hash, verdict, generation, acceptedUntil);
  return verdict;
}
