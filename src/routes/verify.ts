import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import { missingScope } from "../keys/scopes";
import { verifySecret } from "../edge/verify";
import { countUse } from "../edge/usage-buffer";
import { admitOrFailClosed } from "../edge/front-door";
import { MAX_CREDENTIAL_LENGTH } from "../edge/credentials";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";
import { iso } from "./views";

const VerifyInputSchema = z
  .strictObject({
    key: z.string().min(1).max(MAX_CREDENTIAL_LENGTH),
    scopes: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,63}:[a-z0-9][a-z0-9_.-]{0,63}$/))
      .max(32)
      .optional(),
  })
  .openapi("VerifyInput");

const VerifyResultSchema = z
  .object({
    valid: z.boolean(),
    code: z.string().optional(),
    keyId: z.string().nullable(),
    consumerId: z.string().nullable(),
    version: z.number().int().nullable(),
    scopes: z.array(z.string()),
    expiresAt: z.string().nullable(),
    graceUntil: z.string().nullable(),
    ratelimit: z
      .object({ policy: z.string(), state: z.string() })
      .optional()
      .openapi({ description: "RateLimit-Policy and RateLimit as the front door would send them" }),
  })
  .openapi("VerifyResult");

const verify = createRoute({
  method: "post",
  path: "/verify",
  tags: ["verify"],
  summary: "Verify a key for a service that asks instead of proxying",
  request: { body: jsonBody(VerifyInputSchema) },
  responses: { 200: jsonResponse(VerifyResultSchema, "The verdict"), ...problemResponses },
});

const INVALID = {
  keyId: null,
  consumerId: null,
  version: null,
  scopes: [],
  expiresAt: null,
  graceUntil: null,
};

export const verifyRoutes = managementRouter().openapi(verify, async (c) => {
  const input = c.req.valid("json");
  const verdict = await verifySecret(c.env, c.get("config"), input.key);
  if (!verdict.ok) return c.json({ valid: false, code: verdict.code, ...INVALID }, 200);
  const { record } = verdict;
  const identity = {
    keyId: record.keyId,
    consumerId: record.consumerId,
    version: record.version,
    scopes: record.scopes,
    expiresAt: iso(record.expiresAt),
    graceUntil: iso(record.graceUntil),
  };
  const needed = missingScope(record.scopes, input.scopes ?? []);
  if (needed !== null) {
    return c.json({ valid: false, code: "insufficient_scope", ...identity }, 200);
  }
  const now = Date.now();
  const admission = await admitOrFailClosed(c.env, c.executionCtx, record, now);
  const ratelimit =
    admission.headers.RateLimit !== undefined
      ? { policy: admission.headers["RateLimit-Policy"]!, state: admission.headers.RateLimit }
      : undefined;
  const limited = ratelimit ? { ratelimit } : {};
  if (!admission.ok)
    return c.json({ valid: false, code: admission.code, ...identity, ...limited }, 200);
  countUse(c.env, c.executionCtx, record, now);
  return c.json({ valid: true, ...identity, ...limited }, 200);
});
