import { createRoute, z } from "@hono/zod-openapi";
import { MAX_WEBHOOK_SECRET_OVERLAP_SECONDS } from "../webhooks/events";
import { getConsumer } from "../store/consumers";
import { listDeliveries, type WebhookDelivery } from "../webhooks/deliveries";
import { auditOf, change, coordinator, found, read } from "./coordinator-call";
import { listPage } from "./pages";
import { managementRouter } from "./router";
import { IdParam, jsonBody, jsonResponse, pageOf, PageQuery, problemResponses } from "./schemas";
import { iso } from "./views";

/** Webhooks to a consumer: its deliveries, redelivery, and its signing secret's rotation. */

const DeliveryStatusSchema = z.enum(["pending", "delivered", "failed"]);

export const WebhookDeliverySchema = z
  .object({
    id: z.string(),
    consumerId: z.string(),
    eventId: z
      .string()
      .openapi({ description: "the webhook-id header, the same on every attempt" }),
    type: z.string(),
    status: DeliveryStatusSchema,
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastAttemptAt: z.string().nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    url: z.string().nullable().openapi({ description: "where the last attempt went" }),
    redeliveryOf: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    deliveredAt: z.string().nullable(),
    payload: z
      .object({
        type: z.string(),
        timestamp: z.string(),
        data: z.record(z.string(), z.unknown()),
      })
      .openapi({ description: "the exact body sent (never a secret)" }),
  })
  .openapi("WebhookDelivery");

function deliveryView(delivery: WebhookDelivery) {
  return {
    id: delivery.id,
    consumerId: delivery.consumerId,
    eventId: delivery.eventId,
    type: delivery.eventType,
    status: delivery.status,
    attempts: delivery.attempts,
    nextAttemptAt: iso(delivery.nextAttemptAt),
    lastAttemptAt: iso(delivery.lastAttemptAt),
    lastStatusCode: delivery.lastStatusCode,
    lastError: delivery.lastError,
    url: delivery.url,
    redeliveryOf: delivery.redeliveryOf,
    createdAt: iso(delivery.createdAt)!,
    updatedAt: iso(delivery.updatedAt)!,
    deliveredAt: iso(delivery.deliveredAt),
    payload: JSON.parse(delivery.payload) as {
      type: string;
      timestamp: string;
      data: Record<string, unknown>;
    },
  };
}

const list = createRoute({
  method: "get",
  path: "/consumers/{id}/webhooks",
  tags: ["webhooks"],
  summary: "List a consumer's webhook deliveries, newest first",
  request: {
    params: IdParam("id"),
    query: PageQuery.extend({ status: DeliveryStatusSchema.optional() }),
  },
  responses: {
    200: jsonResponse(pageOf(WebhookDeliverySchema), "A page of deliveries"),
    ...problemResponses,
  },
});

const DeliveryParams = z.object({
  id: z
    .string()
    .min(1)
    .max(64)
    .openapi({ param: { name: "id", in: "path" } }),
  deliveryId: z
    .string()
    .min(1)
    .max(64)
    .openapi({ param: { name: "deliveryId", in: "path" } }),
});

const redeliver = createRoute({
  method: "post",
  path: "/consumers/{id}/webhooks/{deliveryId}/redeliver",
  tags: ["webhooks"],
  summary: "Send a delivery's event again, as a new delivery with its own attempts",
  request: { params: DeliveryParams, body: jsonBody(z.strictObject({}), false) },
  responses: {
    202: jsonResponse(WebhookDeliverySchema, "The new delivery, pending"),
    ...problemResponses,
  },
});

const RotateSecretSchema = z
  .strictObject({
    keepPreviousSeconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_WEBHOOK_SECRET_OVERLAP_SECONDS)
      .optional()
      .openapi({
        description:
          "how long the previous secret keeps signing beside the new one (default 86400; 0: at once)",
      }),
  })
  .openapi("WebhookSecretRotation");

export const RotatedSecretSchema = z.object({
  consumerId: z.string(),
  webhookSecret: z.string().openapi({ description: "Shown once, never again." }),
  previousSecretRetiresAt: z.string().nullable(),
});

const rotateSecret = createRoute({
  method: "post",
  path: "/consumers/{id}/webhook-secret/rotate",
  tags: ["webhooks"],
  summary: "Replace the consumer's webhook signing secret; the new one is in this response only",
  request: { params: IdParam("id"), body: jsonBody(RotateSecretSchema, false) },
  responses: {
    200: jsonResponse(RotatedSecretSchema, "The new secret"),
    ...problemResponses,
  },
});

/** Default overlap of a rotated webhook secret: a day for receivers to switch. */
const DEFAULT_KEEP_PREVIOUS_SECONDS = 86_400;

export const webhookRoutes = managementRouter()
  .openapi(list, async (c) => {
    const { id } = c.req.valid("param");
    const { status, ...page } = c.req.valid("query");
    found(await read(() => getConsumer(c.env.DB, id)), "consumer");
    const deliveries = await listPage(c, `consumers/${id}/webhooks`, page, (request) =>
      listDeliveries(c.env.DB, id, { status }, request),
    );
    return c.json(
      { items: deliveries.items.map(deliveryView), nextCursor: deliveries.nextCursor },
      200,
    );
  })
  .openapi(redeliver, async (c) => {
    const { id, deliveryId } = c.req.valid("param");
    const delivery = await change(() =>
      coordinator(c, id).redeliverWebhook(deliveryId, auditOf(c)),
    );
    return c.json(deliveryView(delivery), 202);
  })
  .openapi(rotateSecret, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json") as z.infer<typeof RotateSecretSchema> | undefined;
    const rotated = await change(() =>
      coordinator(c, id).rotateWebhookSecret(
        body?.keepPreviousSeconds ?? DEFAULT_KEEP_PREVIOUS_SECONDS,
        auditOf(c),
      ),
    );
    return c.json(
      {
        consumerId: id,
        webhookSecret: rotated.webhookSecret,
        previousSecretRetiresAt: iso(rotated.previousSecretRetiresAt),
      },
      200,
    );
  });
