import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";
import { managementRouter } from "./router";
import { forgetConsumer, forgetKey } from "../edge/record-cache";
import { newId } from "../keys/random";
import { getConsumer, listConsumers, type Consumer } from "../store/consumers";
import { auditOf, change, coordinator, found, read } from "./coordinator-call";
import { listPage } from "./pages";
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
import { webhookUrlProblem } from "../webhooks/webhook-url";

/**
 * A consumer's webhook endpoint. The rule is webhook-url.ts's; Keygate's own host, which
 * needs the request, is checked by the handlers (`refuseOwnHost`).
 */
const WebhookUrlSchema = z
  .string()
  .max(2048)
  .superRefine((url, ctx) => {
    const problem = webhookUrlProblem(url, null);
    if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
  })
  .openapi({
    format: "uri",
    example: "https://hooks.example.com/keygate",
    description:
      "Where Keygate POSTs this consumer's signed webhooks. An https:// URL, or http:// to localhost, 127.x.y.z or [::1] for local development (the only form in which a loopback host is accepted). Refused with 400 validation_failed: a user name or password; whitespace, control characters or a backslash; an IP literal in a loopback, private, link-local, carrier-grade NAT, unspecified, multicast, reserved, documentation, unique-local or cloud-metadata range, in any notation (decimal, hex, octal, short, IPv4-mapped or NAT64 IPv6); a name that resolves only inside a network (localhost, a single label such as metadata, or under .localhost, .local, .internal, .arpa; trailing dots ignored); and Keygate's own host. The same rule is checked again before every delivery.",
  });

/** Refuses a webhookUrl on the host this request came to: Keygate would call itself. */
function refuseOwnHost(c: Context<AppEnv>, webhookUrl: string | null | undefined): void {
  if (typeof webhookUrl !== "string") return;
  const problem = webhookUrlProblem(webhookUrl, new URL(c.req.url).host);
  if (problem === null) return;
  throw new KeygateError("validation_failed", {
    detail: `json webhookUrl: ${problem}`,
    extensions: { errors: [{ path: "webhookUrl", message: problem }] },
  });
}

const ConsumerInputSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200),
    metadata: MetadataSchema.optional(),
    rateLimit: RateLimitSchema.optional(),
    monthlyQuota: z.number().int().min(1).max(1e12).optional(),
    webhookUrl: WebhookUrlSchema.optional(),
  })
  .openapi("ConsumerInput");

const ConsumerPatchSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    metadata: MetadataSchema.nullable().optional(),
    rateLimit: RateLimitSchema.nullable().optional(),
    monthlyQuota: z.number().int().min(1).max(1e12).nullable().optional(),
    webhookUrl: WebhookUrlSchema.nullable().optional(),
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
    refuseOwnHost(c, input.webhookUrl);
    const id = newId("csm");
    const created = await change(async () => ({
      ok: true as const,
      value: await coordinator(c, id).createConsumer(
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
    const page = await listPage(c, "consumers", c.req.valid("query"), (request) =>
      listConsumers(c.env.DB, request),
    );
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
    const patch = c.req.valid("json");
    refuseOwnHost(c, patch.webhookUrl);
    const updated = await change(() => coordinator(c, id).updateConsumer(patch, auditOf(c)));
    return c.json(withSecret(updated), 200);
  })
  .openapi(remove, async (c) => {
    const { id } = c.req.valid("param");
    const result = await change(() => coordinator(c, id).deleteConsumer(auditOf(c)));
    forgetConsumer(id);
    for (const keyId of result.revokedKeys) forgetKey(keyId);
    return c.json({ id, deleted: true as const, revokedKeys: result.revokedKeys }, 200);
  });
