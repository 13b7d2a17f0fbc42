import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import type { KeyState, Rotation } from "../domain/key-state";
import type { Context } from "hono";
import type { CoordinatorApi } from "../coordinator/client";
import type { RotationUsage } from "../coordinator/usage-ledger";
import type { Result } from "../domain/result";
import { settle } from "../domain/rotation-machine";
import type { AppEnv } from "../env";
import type { AuditContext } from "../store/audit";
import { flushUsage } from "../edge/usage-buffer";
import { KeygateError } from "../errors";
import { getKeyState, getRotation } from "../store/keys";
import { auditOf, change, coordinator, found, read } from "./coordinator-call";
import {
  IdParam,
  jsonBody,
  jsonResponse,
  problemResponses,
  RotationReportSchema,
  RotationSchema,
} from "./schemas";
import { rotationReportView, rotationView } from "./views";
import { logError } from "../log";

const ExtendSchema = z
  .strictObject({
    gracePeriodSeconds: z
      .number()
      .int()
      .min(1)
      .max(10 * 365 * 86_400),
  })
  .openapi("ExtendInput");

const EmptySchema = z.strictObject({}).openapi("Empty");

const getOne = createRoute({
  method: "get",
  path: "/rotations/{id}",
  tags: ["rotations"],
  summary: "Get a rotation with the traffic on the old and new version since it began",
  request: { params: IdParam("id") },
  responses: { 200: jsonResponse(RotationReportSchema, "The rotation"), ...problemResponses },
});

function action(name: string, summary: string, body: z.ZodType = EmptySchema) {
  return createRoute({
    method: "post",
    path: `/rotations/{id}/${name}`,
    tags: ["rotations"],
    summary,
    request: { params: IdParam("id"), body: jsonBody(body, name === "extend") },
    responses: { 200: jsonResponse(RotationSchema, "The rotation"), ...problemResponses },
  });
}

const complete = action("complete", "Retire the old version now");
const rollback = action("rollback", "Revoke the new version and restore the old one to active");
const extend = action("extend", "Move graceUntil later by gracePeriodSeconds", ExtendSchema);

/** Loads the rotation named in the path and runs one coordinator action on it. */
async function rotationAction(
  c: Context<AppEnv>,
  act: (api: CoordinatorApi, rotation: Rotation, audit: AuditContext) => Promise<Result<Rotation>>,
) {
  const rotation = await loadRotation(c.env.DB, c.req.param("id") ?? "");
  const done = await change(
    () => act(coordinator(c, rotation.consumerId), rotation, auditOf(c)),
    rotation.keyId,
  );
  return c.json(rotationView(done), 200);
}

/**
 * Rotations as `GET /rotations/:id` and `GET /keys/:id/rotations` show them: as of `now`, so
 * one whose grace has passed shows as completed before the alarm marks it, and with the
 * traffic on the old and new version since each began. `state` is the key's current state;
 * call after `flushUsage`, so this isolate's counts are in.
 */
export async function rotationReports(
  c: Context<AppEnv>,
  state: KeyState,
  rotations: Rotation[],
  now = Date.now(),
) {
  const settled = settle(state, now);
  const current = rotations.map(
    (rotation) =>
      (rotation.state === "in_progress" &&
        settled.ok &&
        settled.rotations.find((r) => r.id === rotation.id)) ||
      rotation,
  );
  const api = coordinator(c, state.key.consumerId);
  let usage: RotationUsage[];
  try {
    usage = await Promise.all(current.map((rotation) => api.rotationUsage(rotation)));
  } catch (error) {
    logError("coordinator_call_failed", { error });
    throw new KeygateError("unavailable", { detail: "Usage is unavailable; try again." });
  }
  return current.map((rotation, i) => rotationReportView(rotation, usage[i]!));
}

async function loadRotation(db: D1Database, id: string): Promise<Rotation> {
  return found(await read(() => getRotation(db, id)), "rotation");
}

export const rotationRoutes = managementRouter()
  .openapi(getOne, async (c) => {
    const { id } = c.req.valid("param");
    const { consumerId, keyId } = await loadRotation(c.env.DB, id);
    // counts this isolate holds may move the rotation on (first use, idle): report them first
    await flushUsage(c.env, consumerId);
    const [rotation, state] = await read(() =>
      Promise.all([getRotation(c.env.DB, id), getKeyState(c.env.DB, keyId)]),
    );
    const [report] = await rotationReports(c, found(state, "key"), [found(rotation, "rotation")]);
    return c.json(report!, 200);
  })
  .openapi(complete, (c) => rotationAction(c, (api, r, audit) => api.completeRotation(r.id, audit)))
  .openapi(rollback, (c) => rotationAction(c, (api, r, audit) => api.rollbackRotation(r.id, audit)))
  .openapi(extend, async (c) => {
    const rotation = await loadRotation(c.env.DB, c.req.valid("param").id);
    const { gracePeriodSeconds } = c.req.valid("json") as z.infer<typeof ExtendSchema>;
    const done = await change(
      () =>
        coordinator(c, rotation.consumerId).extendRotation(
          rotation.id,
          gracePeriodSeconds,
          auditOf(c),
        ),
      rotation.keyId,
    );
    return c.json(rotationView(done), 200);
  });
