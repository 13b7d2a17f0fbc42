import { createRoute, z } from "@hono/zod-openapi";
import { KeygateError } from "../errors";
import { forgetJwks } from "../tokens/jwks-cache";
import { signerOf, type RingSummary } from "../tokens/token-signer";
import { managementRouter } from "./router";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";
import { iso } from "./views";

const RingSchema = z
  .object({
    current: z.object({ kid: z.string(), alg: z.string(), activatedAt: z.string().nullable() }),
    next: z.object({ kid: z.string(), alg: z.string() }),
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
    emergency: z
      .boolean()
      .optional()
      .openapi({ description: "drop the current key at once: its tokens stop verifying" }),
  })
  .openapi("SigningKeyRotateInput");

function view(ring: RingSummary) {
  return {
    current: { ...ring.current, activatedAt: iso(ring.current.activatedAt) },
    next: ring.next,
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
    console.error(JSON.stringify({ event: "signer_failed", error: String(error) }));
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
  summary: "Rotate the signing keys now (emergency: drop the current key at once)",
  request: { body: jsonBody(RotateSchema, false) },
  responses: { 200: jsonResponse(RingSchema, "The ring after rotation"), ...problemResponses },
});

export const signingKeyRoutes = managementRouter()
  .openapi(list, async (c) => c.json(view(await signer(() => signerOf(c.env).summary())), 200))
  .openapi(rotate, async (c) => {
    const { emergency } = c.req.valid("json") as z.infer<typeof RotateSchema>;
    const ring = await signer(() => signerOf(c.env).rotate(emergency === true));
    forgetJwks();
    return c.json(view(ring), 200);
  });
