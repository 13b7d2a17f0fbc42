import { setTimeout as sleep } from "node:timers/promises";
import type { Rotation } from "../api-types.js";
import type { CliContext } from "../context.js";
import { ApiError, CliError, EXIT } from "../errors.js";
import { idleVerdict, observe, type IdleVerdict, type QuietWatch } from "../idle-watch.js";
import { duration } from "../../duration.js";
import { note, progress, span } from "../output.js";
import { rotationPath } from "../paths.js";

export interface WaitIdleOptions {
  idleMs: number;
  timeoutMs: number;
  intervalMs: number;
}

function describe(verdict: IdleVerdict, idleMs: number): string {
  switch (verdict.kind) {
    case "waiting_for_new":
      return `waiting for the new secret's first use (old secret: ${verdict.oldRequests} requests since the rotation)`;
    case "old_in_use":
      return `new secret in use (${verdict.newRequests} requests); old secret quiet for ${span(verdict.quietMs)} of ${duration(idleMs / 1000)}`;
    case "idle":
      return "old secret idle: completing";
    case "ended":
      return `rotation ${verdict.state}`;
  }
}

/**
 * Watches a rotation's traffic (`GET /rotations/:id`) and completes it once the new secret
 * is in use and the old one has been quiet for `idleMs` (see idle-watch.ts). Ends early,
 * without completing, if the rotation ends some other way; fails after `timeoutMs`.
 */
export async function waitIdleThenComplete(
  ctx: CliContext,
  rotationId: string,
  options: WaitIdleOptions,
): Promise<Rotation> {
  const path = rotationPath(rotationId);
  const started = Date.now();
  const shown = progress(`watching rotation ${rotationId}`, ctx.json);
  const interrupted = () => {
    shown.stop();
    note(
      `Stopped watching. Rotation ${rotationId} is still in progress: ` +
        `keygate keys complete ${rotationId} retires the old secret.`,
    );
    process.exit(EXIT.interrupted);
  };
  process.once("SIGINT", interrupted);
  let watch: QuietWatch | null = null;
  try {
    for (;;) {
      const rotation = await ctx.client.management<Rotation>("GET", path);
      const now = Date.now();
      watch = observe(watch, rotation, now);
      const verdict = idleVerdict(watch, rotation, now, options.idleMs);
      if (verdict.kind === "ended") {
        if (verdict.state === "rolled_back") {
          shown.fail(`rotation ${rotationId} was rolled back`);
          throw new CliError(
            `rotation ${rotationId} was rolled back while waiting; nothing completed`,
          );
        }
        shown.succeed(
          `rotation ${rotationId} ended by itself (${rotation.endReason ?? "completed"})`,
        );
        return rotation;
      }
      if (verdict.kind === "idle") {
        shown.update(describe(verdict, options.idleMs));
        const completed = await complete(ctx, path);
        shown.succeed(
          `rotation ${rotationId} completed: the old secret was quiet for ${span(verdict.quietMs)}`,
        );
        return completed;
      }
      shown.update(describe(verdict, options.idleMs));
      if (now - started >= options.timeoutMs) {
        shown.fail(`gave up on rotation ${rotationId}`);
        throw new CliError(
          `timed out after ${duration(options.timeoutMs / 1000)}: ${describe(verdict, options.idleMs)}`,
          {
            details: [
              `Rotation ${rotationId} is still in progress. Finish it by hand with`,
              `  keygate keys complete ${rotationId}   or   keygate keys rollback ${rotationId}`,
            ],
          },
        );
      }
      await sleep(Math.min(options.intervalMs, Math.max(0, started + options.timeoutMs - now)));
    }
  } finally {
    process.removeListener("SIGINT", interrupted);
    shown.stop();
  }
}

/** Completes the rotation; one that ended meanwhile (409) is read back as it ended. */
async function complete(ctx: CliContext, path: string): Promise<Rotation> {
  try {
    return await ctx.client.management<Rotation>("POST", `${path}/complete`, { body: {} });
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      const rotation = await ctx.client.management<Rotation>("GET", path);
      if (rotation.state === "completed") return rotation;
    }
    throw error;
  }
}
