import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import type { Rotation } from "../coordinator/key-state";
import type { Context } from "hono";
import type { CoordinatorApi } from "../coordinator/client";
import type { Result } from "../coordinator/result";
import { settle } from "../coordinator/rotation-machine";
import type { AppEnv } from "../env";
import type { AuditContext } from "../store/audit";
import { flushUsage } from "../edge/usage-buffer";
import { KeygateError } from "../errors";
import { getKeyState, getRotation } from "../store/keys";
import { auditOf, change, coordinator, found, read } from "./coordinator-call";
import { IdParam, jsonBody, jsonResponse, problemResponses, RotationSchema } from "./schemas";
import { rotationView } from "./views";

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
  responses: { 200: jsonResponse(RotationSchema, "The rotation"), ...problemResponses },
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

/** The rotation as of now: one whose grace has passed shows as completed. */
async function currentRotation(db: D1Database, rotation: Rotation): Promise<Rotation> {
  if (rotation.state !== "in_progress") return rotation;
  const state = await getKeyState(db, rotation.keyId);
  if (!state) return rotation;
  const settled = settle(state, Date.now());
  return (settled.ok && settled.rotations.find((r) => r.id === rotation.id)) || rotation;
}

async function loadRotation(db: D1Database, id: string): Promise<Rotation> {
  return found(await read(() => getRotation(db, id)), "rotation");
}

export const rotationRoutes = managementRouter()
  .openapi(getOne, async (c) => {
    const stored = await loadRotation(c.env.DB, c.req.valid("param").id);
    const rotation = await read(() => currentRotation(c.env.DB, stored));
    await flushUsage(c.env, rotation.consumerId);
    let usage;
    try {
      usage = await coordinator(c, rotation.consumerId).rotationUsage(
        rotation.consumerId,
        rotation,
      );
    } catch (error) {
      console.error(JSON.stringify({ event: "coordinator_call_failed", error: String(error) }));
      throw new KeygateError("unavailable", { detail: "Usage is unavailable; try again." });
    }
    return c.json(rotationView(rotation, usage), 200);
  })
  .openapi(complete, (c) =>
    rotationAction(c, (api, r, audit) => api.completeRotation(r.consumerId, r.id, audit)),
  )
  .openapi(rollback, (c) =>
    rotationAction(c, (api, r, audit) => api.rollbackRotation(r.consumerId, r.id, audit)),
  )
  .openapi(extend, async (c) => {
    const rotation = await loadRotation(c.env.DB, c.req.valid("param").id);
    const { gracePeriodSeconds } = c.req.valid("json") as z.infer<typeof ExtendSchema>;
    const done = await change(
      () =>
        coordinator(c, rotation.consumerId).extendRotation(
          rotation.consumerId,
          rotation.id,
          gracePeriodSeconds,
          auditOf(c),
        ),
      rotation.keyId,
    );
    return c.json(rotationView(done), 200);
  });
