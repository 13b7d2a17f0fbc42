import { createRoute, z } from "@hono/zod-openapi";
import { checkKey } from "../edge/check-key";
import { managementRouter } from "./router";
import { MAX_CREDENTIAL_LENGTH } from "../edge/credentials";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";

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

export const verifyRoutes = managementRouter().openapi(verify, async (c) => {
  const input = c.req.valid("json");
  return c.json(
    await checkKey(c.env, c.executionCtx, c.get("config"), input.key, input.scopes),
    200,
  );
});
