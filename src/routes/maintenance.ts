import { createRoute, z } from "@hono/zod-openapi";
import { logMaintenance, runMaintenance } from "../maintenance/run";
import { changesIn, type MaintenanceReport } from "../maintenance/plan";
import { managementRouter } from "./router";
import { jsonBody, jsonResponse, problemResponses } from "./schemas";
import { iso } from "./views";

const RunSchema = z.strictObject({}).openapi("MaintenanceRunInput");

const DriftSchema = z.enum(["missing", "stale", "retired", "orphan"]).openapi({
  description:
    "missing: an active or grace version had no KV record (written back); stale: its record differed from D1 (rewritten); retired: a record of a revoked version, or one expired past its 30-day retention (removed); orphan: a record whose secret D1 does not hold (removed)",
});

const ReportSchema = z
  .object({
    startedAt: z.string(),
    finishedAt: z.string(),
    changes: z.number().int().openapi({ description: "everything the run changed: 0 on a rerun" }),
    rotationsCompleted: z.array(
      z.object({ consumerId: z.string(), keyId: z.string(), rotationId: z.string() }),
    ),
    versionsExpired: z.array(
      z.object({ consumerId: z.string(), keyId: z.string(), version: z.number().int() }),
    ),
    reminders: z.array(
      z.object({
        type: z.enum(["rotation.grace_ending", "key.expiring", "key.rotation_due"]),
        consumerId: z.string(),
        keyId: z.string(),
        version: z.number().int(),
        rotationId: z.string().nullable(),
      }),
    ),
    reconciliation: z.object({
      keysChecked: z.number().int(),
      recordsListed: z.number().int(),
      fixed: z.array(
        z.object({
          consumerId: z.string().nullable(),
          keyId: z.string().nullable(),
          version: z.number().int().nullable(),
          drift: DriftSchema,
          queued: z.boolean().openapi({
            description: "KV refused the write; the consumer's coordinator retries it",
          }),
        }),
      ),
      keysWalk: z.enum(["complete", "continues"]),
      kvWalk: z.enum(["complete", "continues"]),
    }),
    pruned: z
      .object({
        idempotencyRecords: z.number().int(),
        webhookDeliveries: z.number().int(),
      })
      .openapi({
        description:
          "rows deleted because their time is over: idempotency records past their 24-hour replay window, webhook deliveries settled more than 30 days ago",
      }),
    failures: z.array(
      z.object({
        step: z.string(),
        consumerId: z.string().nullable(),
        keyId: z.string().nullable(),
        error: z.string(),
      }),
    ),
  })
  .openapi("MaintenanceReport");

/** The report as JSON: times as ISO-8601, with the count of changes. */
export function maintenanceReportView(report: MaintenanceReport): z.infer<typeof ReportSchema> {
  return {
    ...report,
    startedAt: iso(report.startedAt)!,
    finishedAt: iso(report.finishedAt)!,
    changes: changesIn(report),
  };
}

const run = createRoute({
  method: "post",
  path: "/maintenance/run",
  tags: ["maintenance"],
  summary:
    "Run scheduled maintenance now: close ended rotations, expire keys, send due reminders, reconcile KV with D1, prune idempotency records and settled webhook deliveries past their time; answers what it did",
  request: { body: jsonBody(RunSchema, false) },
  responses: {
    200: jsonResponse(ReportSchema, "What the run did (failures listed, not thrown)"),
    ...problemResponses,
  },
});

export const maintenanceRoutes = managementRouter().openapi(run, async (c) => {
  const requestId = c.get("requestId");
  const report = await runMaintenance(c.env, { audit: { actor: "system", requestId } });
  logMaintenance(report, { trigger: "api", requestId });
  return c.json(maintenanceReportView(report), 200);
});
