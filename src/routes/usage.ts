import { createRoute, z } from "@hono/zod-openapi";
import type { HourlyUsage } from "../store/usage";
import { flushUsage } from "../edge/usage-buffer";
import { KeygateError } from "../errors";
import { getKeyState } from "../store/keys";
import { usageOfKey } from "../store/usage";
import { coordinator, found, read } from "./coordinator-call";
import { managementRouter } from "./router";
import { IdParam, jsonResponse, problemResponses, TimestampSchema } from "./schemas";
import { iso } from "./views";

const HOUR = 3_600_000;
/** The widest window one request may ask for: 31 days of hours. */
export const MAX_USAGE_HOURS = 31 * 24;

const UsageQuery = z.strictObject({
  from: TimestampSchema.optional().openapi({
    description: "start (inclusive); default: 24 h before to",
  }),
  to: TimestampSchema.optional().openapi({ description: "end (exclusive); default: now" }),
});

export const UsageSchema = z
  .object({
    keyId: z.string(),
    from: z.string(),
    to: z.string(),
    granularity: z.literal("hour"),
    total: z.number().int(),
    items: z.array(
      z.object({
        hour: z.string(),
        requests: z.number().int(),
        versions: z.record(z.string(), z.number().int()),
      }),
    ),
  })
  .openapi("KeyUsage");

const usage = createRoute({
  method: "get",
  path: "/keys/{id}/usage",
  tags: ["keys"],
  summary: "Hourly request counts per version (hours without traffic are left out)",
  request: { params: IdParam("id"), query: UsageQuery },
  responses: { 200: jsonResponse(UsageSchema, "Hourly usage"), ...problemResponses },
});

/** Sums hourly rows (from D1 and from the coordinator) into one entry per hour. */
export function byHour(rows: HourlyUsage[]) {
  const hours = new Map<number, { requests: number; versions: Record<string, number> }>();
  for (const row of rows) {
    const entry = hours.get(row.hour) ?? { requests: 0, versions: {} };
    entry.requests += row.requests;
    entry.versions[row.version] = (entry.versions[row.version] ?? 0) + row.requests;
    hours.set(row.hour, entry);
  }
  return [...hours.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([hour, entry]) => ({ hour: iso(hour)!, ...entry }));
}

export const usageRoutes = managementRouter().openapi(usage, async (c) => {
  const { id } = c.req.valid("param");
  const query = c.req.valid("query");
  const to = query.to ? Date.parse(query.to) : Date.now();
  const from = Math.floor((query.from ? Date.parse(query.from) : to - 24 * HOUR) / HOUR) * HOUR;
  if (from >= to)
    throw new KeygateError("validation_failed", { detail: "from must be before to." });
  if (to - from > MAX_USAGE_HOURS * HOUR) {
    throw new KeygateError("validation_failed", {
      detail: `Ask for at most ${MAX_USAGE_HOURS} hours (31 days) at a time.`,
    });
  }
  const state = found(await read(() => getKeyState(c.env.DB, id)), "key");
  const consumerId = state.key.consumerId;
  await flushUsage(c.env, consumerId);
  const [stored, pending] = await Promise.all([
    read(() => usageOfKey(c.env.DB, id, from, to)),
    read(() => coordinator(c, consumerId).pendingUsage(id)),
  ]);
  const items = byHour([...stored, ...pending.filter((h) => h.hour >= from && h.hour < to)]);
  return c.json(
    {
      keyId: id,
      from: iso(from)!,
      to: iso(to)!,
      granularity: "hour" as const,
      total: items.reduce((sum, item) => sum + item.requests, 0),
      items,
    },
    200,
  );
});
