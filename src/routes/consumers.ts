import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import { forgetConsumer, forgetKey } from "../edge/record-cache";
import { newId } from "../keys/random";
import { getConsumer, listConsumers, type Consumer } from "../store/consumers";
import { auditOf, change, coordinator, found, read } from "./coordinator-call";
import {
  ConsumerSchema,
  IdParam,
  jsonBody,
  jsonResponse,
  MetadataSchema,
  pageOf,
  PageQuery,
  problemResponses,
  RateLimitSchema,
} from "./schemas";
import { consumerView } from "./views";

const ConsumerInputSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200),
    metadata: MetadataSchema.optional(),
    rateLimit: RateLimitSchema.optional(),
    monthlyQuota: z.number().int().min(1).max(1e12).optional(),
    webhookUrl: z
      .url({ protocol: /^https?$/ })
      .max(2048)
      .optional(),
  })
  .openapi("ConsumerInput");

const ConsumerPatchSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    metadata: MetadataSchema.nullable().optional(),
    rateLimit: RateLimitSchema.nullable().optional(),
    monthlyQuota: z.number().int().min(1).max(1e12).nullable().optional(),
    webhookUrl: z
      .url({ protocol: /^https?$/ })
      .max(2048)
      .nullable()
      .optional(),
  })
  .openapi("ConsumerPatch");

/** A consumer as answered by the change that generated its webhook secret (shown once). */
const ConsumerWithSecretSchema = ConsumerSchema.extend({
  webhookSecret: z.string().optional().openapi({
    description:
      "The webhook signing secret (whsec_…), present only in the response that generated it: the creation or first PATCH that gives the consumer a webhookUrl. Shown once, never again.",
  }),
}).openapi("ConsumerWithWebhookSecret");

/** The consumer's view, with its webhook secret when this response is the one to show it. */
function withSecret(result: { consumer: Consumer; webhookSecret: string | null }) {
  const view = consumerView(result.consumer);
  return result.webhookSecret === null ? view : { ...view, webhookSecret: result.webhookSecret };
}

const create = createRoute({
  method: "post",
  path: "/consumers",
  tags: ["consumers"],
  summary: "Create a consumer",
  request: { body: jsonBody(ConsumerInputSchema) },
  responses: {
    201: jsonResponse(ConsumerWithSecretSchema, "The consumer"),
    ...problemResponses,
  },
});

const list = createRoute({
  method: "get",
  path: "/consumers",
  tags: ["consumers"],
  summary: "List consumers, newest first",
  request: { query: PageQuery },
  responses: {
    200: jsonResponse(pageOf(ConsumerSchema), "A page of consumers"),
    ...problemResponses,
  },
});

const get = createRoute({
  method: "get",
  path: "/consumers/{id}",
  tags: ["consumers"],
  summary: "Get a consumer",
  request: { params: IdParam("id") },
  responses: { 200: jsonResponse(ConsumerSchema, "The consumer"), ...problemResponses },
});

const update = createRoute({
  method: "patch",
  path: "/consumers/{id}",
  tags: ["consumers"],
  summary: "Update a consumer",
  request: { params: IdParam("id"), body: jsonBody(ConsumerPatchSchema) },
  responses: {
    200: jsonResponse(ConsumerWithSecretSchema, "The consumer"),
    ...problemResponses,
  },
});

const remove = createRoute({
  method: "delete",
  path: "/consumers/{id}",
  tags: ["consumers"],
  summary: "Delete a consumer and revoke every key of it",
  request: { params: IdParam("id") },
  responses: {
    200: jsonResponse(
      z.object({ id: z.string(), deleted: z.literal(true), revokedKeys: z.array(z.string()) }),
      "Deleted",
    ),
    ...problemResponses,
  },
});

export const consumerRoutes = managementRouter()
  .openapi(create, async (c) => {
    const input = c.req.valid("json");
    const id = newId("csm");
    const created = await change(async () => ({
      ok: true as const,
      value: await coordinator(c, id).createConsumer(
        id,
        {
          name: input.name,
          metadata: input.metadata ?? null,
          rateLimit: input.rateLimit ?? null,
          monthlyQuota: input.monthlyQuota ?? null,
          webhookUrl: input.webhookUrl ?? null,
        },
        auditOf(c),
      ),
    }));
    return c.json(withSecret(created), 201);
  })
  .openapi(list, async (c) => {
    const page = await read(() => listConsumers(c.env.DB, c.req.valid("query")));
    return c.json({ items: page.items.map(consumerView), nextCursor: page.nextCursor }, 200);
  })
  .openapi(get, async (c) => {
    const consumer = await read(() => getConsumer(c.env.DB, c.req.valid("param").id));
    return c.json(
      consumerView(found(consumer?.status === "active" ? consumer : null, "consumer")),
      200,
    );
  })
  .openapi(update, async (c) => {
    const { id } = c.req.valid("param");
    const updated = await change(() =>
      coordinator(c, id).updateConsumer(id, c.req.valid("json"), auditOf(c)),
    );
    return c.json(withSecret(updated), 200);
  })
  .openapi(remove, async (c) => {
    const { id } = c.req.valid("param");
    const result = await change(() => coordinator(c, id).deleteConsumer(id, auditOf(c)));
    forgetConsumer(id);
    for (const keyId of result.revokedKeys) forgetKey(keyId);
    return c.json({ id, deleted: true as const, revokedKeys: result.revokedKeys }, 200);
  });
