import { createRoute, z } from "@hono/zod-openapi";
import { extractCredential } from "../edge/credentials";
import { admit, identify } from "../edge/authenticate";
import { KeygateError } from "../errors";
import { newId } from "../keys/random";
import { grantsScope, SCOPE_PATTERN } from "../keys/scopes";
import { ACCESS_TOKEN_TYPE } from "../tokens/access-token";
import { signerOf, type SignedToken } from "../tokens/token-signer";
import { bodyLimit } from "./body-limit";
import { managementRouter } from "./router";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";
import { logError } from "../log";

const TokenRequestSchema = z
  .strictObject({
    scope: z.string().max(2048).optional().openapi({
      description: "space-separated scopes, at most the key's own; default: all of them",
    }),
    expiresIn: z.number().int().min(10).optional().openapi({ description: "seconds; capped" }),
  })
  .openapi("TokenRequest");

export const TokenResponseSchema = z
  .object({
    access_token: z.string(),
    token_type: z.literal("Bearer"),
    expires_in: z.number().int(),
    scope: z.string(),
  })
  .openapi("TokenResponse");

const token = createRoute({
  method: "post",
  path: "/token",
  tags: ["tokens"],
  summary: "Exchange a key (Authorization header) for a short-lived access token (JWT)",
  request: { body: jsonBody(TokenRequestSchema, false) },
  responses: { 200: jsonResponse(TokenResponseSchema, "The access token"), ...problemResponses },
});

/**
 * `POST /_keygate/v1/token`: the key itself is the credential (no management scope needed).
 * Scopes can be narrowed, never widened; the token never outlives the key version.
 */
export const tokenRoutes = managementRouter();
tokenRoutes.use("/token", bodyLimit(8 * 1024));
tokenRoutes.openapi(token, async (c) => {
  const config = c.get("config");
  const credential = extractCredential(c.req.raw.headers);
  if (credential.kind === "none") throw new KeygateError("missing_credentials");
  if (credential.kind === "refused") throw new KeygateError(credential.code);
  // scopes are checked below, against the narrowing the client asks for
  const identified = await identify(c.env, config, {
    credential: credential.value,
    keysOnly: true,
    strict: true,
    clientIp: c.req.header("cf-connecting-ip") ?? null,
    now: Date.now(),
  });
  if (!identified.ok) throw new KeygateError(identified.code);
  const { record } = identified;
  const input = c.req.valid("json") as z.infer<typeof TokenRequestSchema> | undefined;
  const requested =
    input?.scope === undefined
      ? [...new Set(record.scopes)]
      : [...new Set(input.scope.split(" ").filter(Boolean))];
  for (const scope of requested) {
    if (!SCOPE_PATTERN.test(scope)) {
      throw new KeygateError("validation_failed", { detail: `"${scope}" is not a scope.` });
    }
    if (!grantsScope(record.scopes, scope)) {
      throw new KeygateError("insufficient_scope", {
        detail: `The key does not hold ${scope}; a token can narrow a key's scopes, never widen them.`,
        headers: {
          "WWW-Authenticate": `Bearer realm="keygate", error="insufficient_scope", scope="${scope}"`,
        },
      });
    }
  }
  // the token never outlives the key version: its expiry, or the end of its grace window
  const ends = [record.expiresAt, record.graceUntil].filter((at): at is number => at !== null);
  const notAfter = ends.length ? Math.floor(Math.min(...ends) / 1000) : undefined;
  if (notAfter !== undefined && notAfter <= Math.floor(Date.now() / 1000)) {
    throw new KeygateError("key_expired");
  }
  const ttl = Math.min(input?.expiresIn ?? config.tokens.ttlSeconds, config.tokens.maxTtlSeconds);
  const scope = requested.join(" ");
  let signed: SignedToken;
  try {
    signed = await signerOf(c.env).sign({
      claims: {
        iss: config.tokens.issuer,
        aud: config.tokens.audience,
        sub: record.keyId,
        cid: record.consumerId,
        ver: record.version,
        scope,
        rl: record.rateLimit,
        mq: record.monthlyQuota,
        jti: newId("tok"),
      },
      typ: ACCESS_TOKEN_TYPE,
      ttlSeconds: ttl,
      ...(notAfter !== undefined ? { notAfter } : {}),
    });
  } catch (error) {
    logError("token_sign_failed", { error });
    throw new KeygateError("unavailable", { detail: "Token signing is unavailable; try again." });
  }
  // charged only once the token exists: a signer failure costs the client nothing
  const now = Date.now();
  const admission = await admit(c.env, c.executionCtx, record, now);
  if (!admission.ok) throw new KeygateError(admission.code, { headers: admission.headers });
  for (const [name, value] of Object.entries(admission.headers)) c.header(name, value);
  c.header("Cache-Control", "no-store");
  return c.json(
    {
      access_token: signed.token,
      token_type: "Bearer" as const,
      expires_in: signed.expiresAt - signed.issuedAt,
      scope,
    },
    200,
  );
});
