import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import { listAudit } from "../store/audit";
import { listPage } from "./pages";
import { jsonResponse, pageOf, PageQuery, problemResponses } from "./schemas";
import { iso } from "./views";

export const AuditEventSchema = z
  .object({
    id: z.string(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    target: z.string(),
    consumerId: z.string().nullable(),
    keyId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
    requestId: z.string().nullable(),
  })
  .openapi("AuditEvent");

const AuditQuery = PageQuery.extend({
  consumerId: z.string().max(64).optional(),
  keyId: z.string().max(64).optional(),
  action: z.string().max(64).optional(),
});

const list = createRoute({
  method: "get",
  path: "/audit",
  tags: ["audit"],
  summary: "Audit events, newest first",
  request: { query: AuditQuery },
  responses: {
    200: jsonResponse(pageOf(AuditEventSchema), "A page of audit events"),
    ...problemResponses,
  },
});

export const auditRoutes = managementRouter().openapi(list, async (c) => {
  const { limit, cursor, ...filter } = c.req.valid("query");
  const page = await listPage(c, "audit", { limit, cursor }, (request) =>
    listAudit(c.env.DB, filter, request),
  );
  return c.json(
    {
      items: page.items.map((e) => ({ ...e, at: iso(e.at)! })),
      nextCursor: page.nextCursor,
    },
    200,
  );
});
