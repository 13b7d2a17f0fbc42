import { createRoute, z } from "@hono/zod-openapi";
import { KeygateError } from "../errors";
import { forgetAssertions } from "../tokens/assertion";
import { forgetJwks } from "../tokens/jwks-cache";
import { signerOf, type RingSummary, type RotateOutcome } from "../tokens/token-signer";
import { auditOf } from "./coordinator-call";
import { managementRouter } from "./router";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";
import { iso } from "./views";
import { logError } from "../log";

const RingSchema = z
  .object({
    current: z.object({ kid: z.string(), alg: z.string(), activatedAt: z.string().nullable() }),
    next: z.object({
      kid: z.string(),
      alg: z.string(),
      publishedAt: z.string().nullable(),
      promotableAt: z
        .string()
        .nullable()
        .openapi({ description: "from then on a scheduled rotation may make it the signer" }),
    }),
    previous: z.array(
      z.object({
        kid: z.string(),
        alg: z.string(),
        retiredAt: z.string().nullable(),
        dropAfter: z.string().nullable(),
      }),
    ),
  })
  .openapi("SigningKeys");

const RotateSchema = z
  .strictObject({
    emergency: z.boolean().optional().openapi({
      description:
        "replace every signing key at once (current, next and previous): the tokens and assertions they signed stop verifying",
    }),
  })
  .openapi("SigningKeyRotateInput");

function view(ring: RingSummary) {
  return {
    current: { ...ring.current, activatedAt: iso(ring.current.activatedAt) },
    next: {
      ...ring.next,
      publishedAt: iso(ring.next.publishedAt),
      promotableAt: iso(ring.next.promotableAt),
    },
    previous: ring.previous.map((k) => ({
      ...k,
      retiredAt: iso(k.retiredAt),
      dropAfter: iso(k.dropAfter),
    })),
  };
}

async function signer<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    logError("signer_failed", { error });
    throw new KeygateError("unavailable", { detail: "The signer is unavailable; try again." });
  }
}

const list = createRoute({
  method: "get",
  path: "/signing-keys",
  tags: ["tokens"],
  summary: "The signing-key ring: current, next and previous key ids",
  responses: { 200: jsonResponse(RingSchema, "The ring"), ...problemResponses },
});

const rotate = createRoute({
  method: "post",
  path: "/signing-keys/rotate",
  tags: ["tokens"],
  summary:
    "Rotate the signing keys now: 409 while next is too recently published; emergency replaces every key at once",
  request: { body: jsonBody(RotateSchema, false) },
  responses: { 200: jsonResponse(RingSchema, "The ring after rotation"), ...problemResponses },
});

export const signingKeyRoutes = managementRouter()
  .openapi(list, async (c) => c.json(view(await signer(() => signerOf(c.env).summary())), 200))
  .openapi(rotate, async (c) => {
    const { emergency } = c.req.valid("json") as z.infer<typeof RotateSchema>;
    const outcome = await signer(
      async (): Promise<RotateOutcome> =>
        (await signerOf(c.env).rotate(emergency === true, auditOf(c))) as RotateOutcome,
    );
    if (!outcome.ok) {
      throw new KeygateError(outcome.code, {
        detail: outcome.detail,
        headers: {
          "Retry-After": String(Math.max(1, Math.ceil((outcome.retryAt - Date.now()) / 1000))),
        },
      });
    }
    // this isolate sees the new ring at once; others within the bounds in docs/security.md, "Revocation and propagation bounds"
    forgetJwks();
    if (outcome.dropped.length > 0) forgetAssertions(outcome.dropped);
    return c.json(view(outcome.ring), 200);
  });
