import type { Command } from "commander";
import type { Key, Page, Rotation } from "../api-types.js";
import { contextOf, type CliContext } from "../context.js";
import { CliError } from "../errors.js";
import { duration } from "../../duration.js";
import { ago, bar, fields, print, span, table } from "../output.js";
import { fetchPage, noteNextPage, withPageOptions, type PageOptions } from "../pages.js";
import { keyPath, rotationPath } from "../paths.js";

export function rotationFields(rotation: Rotation, now = Date.now()): string[] {
  const graceLeft =
    rotation.state === "in_progress" && rotation.graceUntil
      ? ` (in ${span(Date.parse(rotation.graceUntil) - now)})`
      : "";
  return fields([
    ["rotation", rotation.id],
    ["key", rotation.keyId],
    [
      "state",
      rotation.state +
        (rotation.endReason && rotation.endReason !== rotation.state
          ? ` (${rotation.endReason})`
          : ""),
    ],
    ["versions", `v${rotation.fromVersion} → v${rotation.toVersion}`],
    ["started", rotation.startedAt],
    [
      "grace until",
      rotation.graceUntil
        ? rotation.graceUntil + graceLeft
        : rotation.graceStartsOnFirstUse && rotation.state === "in_progress"
          ? "starts when the new secret is first used"
          : null,
    ],
    [
      "complete when idle",
      rotation.completeWhenIdleSeconds ? duration(rotation.completeWhenIdleSeconds) : null,
    ],
    ["new first used", rotation.firstUsedAt],
    ["ended", rotation.endedAt],
  ]);
}

/** The old/new traffic share since the rotation began, drawn as bars. */
function trafficLines(rotation: Rotation, now = Date.now()): string[] {
  const usage = rotation.usage;
  if (!usage) return ["traffic: not reported"];
  const total = usage.old.requests + usage.new.requests;
  const share = (n: number) => (total === 0 ? 0 : n / total);
  const percent = (n: number) => `${Math.round(share(n) * 100)}%`.padStart(4);
  const line = (label: string, v: { requests: number; lastUsedAt: string | null }) =>
    `  ${label}  ${bar(share(v.requests))} ${percent(v.requests)}  ${v.requests} requests, ${v.lastUsedAt ? `last ${ago(v.lastUsedAt, now)}` : "none yet"}`;
  return [
    `traffic since ${rotation.startedAt}:`,
    line(`old v${rotation.fromVersion}`.padEnd(7), usage.old),
    line(`new v${rotation.toVersion}`.padEnd(7), usage.new),
  ];
}

/**
 * A rotation id from what the operator typed: a rotation id (`rot_…`) as is; a key id
 * becomes its rotation in progress (or, unless `open`, its latest rotation).
 */
export async function rotationIdOf(
  ctx: CliContext,
  id: string,
  { open }: { open: boolean },
): Promise<string> {
  if (id.startsWith("rot_")) return id;
  const key = await ctx.api<Key>("GET", keyPath(id));
  if (key.rotation && (key.rotation.state === "in_progress" || !open)) return key.rotation.id;
  if (!open) {
    const page = await ctx.api<Page<Rotation>>("GET", `${keyPath(id)}/rotations`, {
      query: { limit: 1 },
    });
    if (page.items[0]) return page.items[0].id;
  }
  throw new CliError(`key ${id} has no rotation${open ? " in progress" : ""}`, {
    details: open
      ? ["Pass a rotation id (rot_…); `keygate rotations list <key-id>` lists them."]
      : [],
  });
}

/** `keygate rotations …`: a rotation's state and the traffic on its old and new secret. */
export function registerRotations(program: Command): void {
  const rotations = program
    .command("rotations")
    .description("show rotations and the traffic on their old and new secrets");

  rotations
    .command("status")
    .description("a rotation's state and its old/new traffic share")
    .argument("<id>", "rotation id (rot_…), or a key id (its current or latest rotation)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const rotationId = await rotationIdOf(ctx, id, { open: false });
      const rotation = await ctx.api<Rotation>("GET", rotationPath(rotationId));
      ctx.emit(rotation, (r) => print(...rotationFields(r), "", ...trafficLines(r)));
    });

  withPageOptions(
    rotations
      .command("list")
      .description("a key's rotations, newest first")
      .argument("<key-id>", "key id"),
  ).action(async (keyId: string, options: PageOptions, command: Command) => {
    const ctx = contextOf(command);
    const page = await fetchPage<Rotation>(ctx, `${keyPath(keyId)}/rotations`, options);
    ctx.emit(page, (p: Page<Rotation>) => {
      print(
        ...table(
          ["id", "state", "versions", "started", "grace until", "ended"],
          p.items.map((r) => [
            r.id,
            r.state,
            `v${r.fromVersion} → v${r.toVersion}`,
            r.startedAt,
            r.graceUntil,
            r.endedAt,
          ]),
        ),
      );
      noteNextPage(p);
    });
  });
}
