/* global URL */
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import {
  ASSERTION_HEADER,
  ASSERTION_TYPE,
  CLOCK_TOLERANCE_SECONDS,
  MAX_JWT_LENGTH,
  SIGNING_ALGORITHMS,
} from "./assertion-format.js";

export {
  ASSERTION_HEADER,
  ASSERTION_TYPE,
  ASSERTION_TTL_SECONDS,
  CLOCK_TOLERANCE_SECONDS,
} from "./assertion-format.js";

/**
 * `keygate/origin`: checks the `X-Keygate-Assertion` header that Keygate adds to every
 * request it proxies, for origins on Node (or any runtime with WebCrypto). Pure jose: no
 * Worker APIs. Plain JavaScript with JSDoc types, checked by `tsconfig.node.json`.
 *
 * ```js
 * import { createAssertionVerifier } from "keygate/origin";
 * const verifyAssertion = createAssertionVerifier({
 *   jwksUrl: "https://keygate.example.com/.well-known/jwks.json",
 *   audience: "https://api.example.com", // the origin of Keygate's ORIGIN_URL
 * });
 * const who = await verifyAssertion(req.headers["x-keygate-assertion"]); // throws → 401
 * ```
 */

/**
 * @typedef {object} KeygateIdentity
 * @property {string} consumerId
 * @property {string} keyId
 * @property {number} keyVersion
 * @property {string[]} scopes
 * @property {import("jose").JWTPayload} claims every claim of the assertion
 */

/**
 * @typedef {object} AssertionVerifierOptions
 * @property {string | URL} [jwksUrl] Keygate's `/.well-known/jwks.json`
 * @property {import("jose").JWTVerifyGetKey} [keys] a key set instead of `jwksUrl` (e.g.
 *   jose's `createLocalJWKSet`)
 * @property {string} audience this origin as Keygate's `ORIGIN_URL` names it: scheme, host
 *   and port, no path (`https://api.example.com`)
 * @property {string} [issuer] Keygate's `TOKEN_ISSUER` (default `keygate`)
 * @property {() => Date} [clock] the current time (tests)
 */

/** Why an assertion was refused; `code` is stable, `message` says more. */
export class AssertionError extends Error {
  /**
   * @param {"missing" | "malformed" | "expired" | "invalid"} code
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(code, message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "AssertionError";
    this.code = code;
  }
}

/** Header members that would let an assertion choose its own key: refused outright. */
const FORBIDDEN_HEADERS = ["jku", "jwk", "x5u", "x5c", "crit"];
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * A function that verifies an assertion and answers who Keygate verified. The JWKS is
 * fetched on first use, cached for a minute, and fetched again at once (at most every 30 s)
 * when an assertion names a key the cache does not hold, which is how new signing keys
 * are picked up.
 *
 * @param {AssertionVerifierOptions} options
 * @returns {(assertion: string | string[] | null | undefined) => Promise<KeygateIdentity>}
 */
export function createAssertionVerifier(options) {
  if (typeof options.audience !== "string" || options.audience === "") {
    throw new TypeError("audience is required: the origin Keygate proxies to");
  }
  const audience = new URL(options.audience).origin;
  const keys =
    options.keys ??
    (options.jwksUrl !== undefined
      ? createRemoteJWKSet(new URL(options.jwksUrl), { cacheMaxAge: 60_000 })
      : undefined);
  if (keys === undefined) throw new TypeError("jwksUrl or keys is required");
  const issuer = options.issuer ?? "keygate";
  const clock = options.clock;

  return async function verifyAssertion(assertion) {
    if (assertion === undefined || assertion === null || assertion === "") {
      throw new AssertionError("missing", `no ${ASSERTION_HEADER} header`);
    }
    if (typeof assertion !== "string" || assertion.length > MAX_JWT_LENGTH) {
      throw new AssertionError("malformed", "not one compact JWS");
    }
    if (!JWS_SHAPE.test(assertion)) throw new AssertionError("malformed", "not a compact JWS");
    let header;
    try {
      header = decodeProtectedHeader(assertion);
    } catch (error) {
      throw new AssertionError("malformed", "unreadable header", error);
    }
    if (FORBIDDEN_HEADERS.some((name) => name in header)) {
      throw new AssertionError("invalid", "the header names its own key");
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(assertion, keys, {
        algorithms: SIGNING_ALGORITHMS,
        issuer,
        audience,
        typ: ASSERTION_TYPE,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ["sub", "exp", "iat"],
        ...(clock ? { currentDate: clock() } : {}),
      }));
    } catch (error) {
      const code = /** @type {{ code?: string }} */ (error).code;
      if (code === "ERR_JWT_EXPIRED") throw new AssertionError("expired", "expired", error);
      throw new AssertionError("invalid", `refused: ${code ?? String(error)}`, error);
    }
    const { sub, cid, ver, scope } = payload;
    if (
      typeof sub !== "string" ||
      typeof cid !== "string" ||
      typeof ver !== "number" ||
      typeof scope !== "string"
    ) {
      throw new AssertionError("invalid", "claims missing");
    }
    return {
      consumerId: cid,
      keyId: sub,
      keyVersion: ver,
      scopes: scope === "" ? [] : scope.split(" "),
      claims: payload,
    };
  };
}
