import { Option, type Command } from "commander";
import {
  bodyOf,
  CLEAR,
  cleared,
  collect,
  orNone,
  parseDuration,
  parseJsonObject,
  parseRateLimit,
  parseSeconds,
  parseTime,
} from "../arguments.js";
import type { IssuedKey, Key, Page, Rotation } from "../api-types.js";
import { confirmOrRefuse } from "../confirm.js";
import { contextOf, type CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { fields, note, print, printSecret, rateLimitText, table } from "../output.js";
import { fetchPage, noteNextPage, withPageOptions, type PageOptions } from "../pages.js";
import { consumerPath, keyPath, rotationPath } from "../paths.js";
import { rotationFields, rotationIdOf } from "./rotations.js";
import { waitIdleThenComplete } from "./wait-idle.js";

function keyFields(key: Key): string[] {
  return fields([
    ["id", key.id],
    ["consumer", key.consumerId],
    ["name", key.name],
    ["status", key.status],
    ["version", key.version],
    ["hint", `…${key.hint}`],
    ["scopes", key.scopes],
    ["rate limit", rateLimitText(key.rateLimit)],
    ["expires", key.expiresAt],
    ["revoked", key.revokedAt],
    ["metadata", key.metadata],
    ["created", key.createdAt],
    ["updated", key.updatedAt],
  ]);
}

function versionTable(key: Key): string[] {
  return table(
    ["version", "status", "hint", "scopes", "created", "expires", "grace until", "last used"],
    key.versions.map((v) => [
      v.version,
      v.status,
      `…${v.hint}`,
      v.scopes,
      v.createdAt,
      v.expiresAt,
      v.graceUntil,
      v.lastUsedAt,
    ]),
  );
}

interface KeyOptions {
  scope?: string[];
  expiresAt?: string | typeof CLEAR;
  expiresIn?: string;
}

function expiryOf(options: KeyOptions): string | null | undefined {
  if (options.expiresAt !== undefined && options.expiresIn !== undefined) {
    throw new UsageError("pass --expires-at or --expires-in, not both");
  }
  return (
    options.expiresIn ?? (options.expiresAt === undefined ? undefined : cleared(options.expiresAt))
  );
}

function keyBody(options: KeyOptions): Record<string, unknown> {
  const body = bodyOf(options, ["name", "rateLimit", "metadata"]);
  if (options.scope !== undefined) body.scopes = options.scope;
  const expiresAt = expiryOf(options);
  if (expiresAt !== undefined) body.expiresAt = expiresAt;
  return body;
}

const scopeOption = (description: string) =>
  new Option("--scope <scope>", `${description} (repeatable, or comma-separated)`).argParser(
    collect,
  );

interface RotateOptions extends KeyOptions {
  grace?: number;
  graceStartsOnFirstUse?: boolean;
  completeWhenIdle?: number;
  emergency?: boolean;
  waitIdle?: boolean;
  idleSeconds: number;
  timeout: number;
  interval: number;
}

function rotateBody(options: RotateOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (options.emergency) body.gracePeriodSeconds = 0;
  else if (options.grace !== undefined) body.gracePeriodSeconds = options.grace;
  if (options.graceStartsOnFirstUse) body.graceStartsOnFirstUse = true;
  if (options.completeWhenIdle !== undefined) {
    body.completeWhenIdleSeconds = options.completeWhenIdle;
  }
  if (options.scope !== undefined) body.scopes = options.scope;
  const expiresAt = expiryOf(options);
  if (expiresAt !== undefined) body.expiresAt = expiresAt;
  return body;
}

async function rotationAction(
  ctx: CliContext,
  id: string,
  action: "complete" | "rollback" | "extend",
  body: Record<string, unknown> = {},
): Promise<Rotation> {
  const rotationId = await rotationIdOf(ctx, id, { open: true });
  return ctx.api<Rotation>("POST", `${rotationPath(rotationId)}/${action}`, { body });
}

/** `keygate keys …`: issue, inspect, rotate and revoke keys. */
export function registerKeys(program: Command): void {
  const keys = program
    .command("keys")
    .description("issue, list, show, update, rotate and revoke keys");

  keys
    .command("create")
    .description("issue a key to a consumer; prints the secret once")
    .argument("<consumer-id>", "consumer id (csm_…)")
    .addOption(scopeOption("a scope the key holds, e.g. prices:read"))
    .option("--name <name>", "a name for the key")
    .addOption(
      new Option("--expires-at <time>", "ISO-8601 time the key stops working").argParser(
        parseTime(1),
      ),
    )
    .addOption(new Option("--expires-in <duration>", "lifetime, e.g. 90d").argParser(parseTime(1)))
    .addOption(
      new Option("--rate-limit <limit/period>", "e.g. 100/60 (default: the consumer's)").argParser(
        parseRateLimit,
      ),
    )
    .addOption(
      new Option("--metadata <json>", "a JSON object kept with it").argParser(parseJsonObject),
    )
    .action(async (consumerId: string, options: KeyOptions, command: Command) => {
      const ctx = contextOf(command);
      const issued = await ctx.api<IssuedKey>("POST", `${consumerPath(consumerId)}/keys`, {
        body: { scopes: [], ...keyBody(options) },
      });
      ctx.emit(issued, ({ key: secret, ...key }) => {
        print(...keyFields(key));
        printSecret(secret);
      });
    });

  withPageOptions(
    keys
      .command("list")
      .description("list a consumer's keys, newest first")
      .argument("<consumer-id>", "consumer id (csm_…)"),
  ).action(async (consumerId: string, options: PageOptions, command: Command) => {
    const ctx = contextOf(command);
    const page = await fetchPage<Key>(ctx, `${consumerPath(consumerId)}/keys`, options);
    ctx.emit(page, (p: Page<Key>) => {
      print(
        ...table(
          ["id", "name", "status", "version", "hint", "scopes", "expires", "rotation"],
          p.items.map((k) => [
            k.id,
            k.name,
            k.status,
            k.version,
            `…${k.hint}`,
            k.scopes,
            k.expiresAt,
            k.rotation?.state === "in_progress" ? k.rotation.id : null,
          ]),
        ),
      );
      noteNextPage(p);
    });
  });

  keys
    .command("get")
    .description("show a key with its versions")
    .argument("<key-id>", "key id")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const key = await ctx.api<Key>("GET", keyPath(id));
      ctx.emit(key, (k) => {
        print(...keyFields(k), "", ...versionTable(k));
        if (k.rotation) print("", ...rotationFields(k.rotation));
      });
    });

  keys
    .command("update")
    .description("change a key's name, scopes, expiry, rate limit or metadata ('none' clears)")
    .argument("<key-id>", "key id")
    .addOption(new Option("--name <name>", "new name, or none").argParser(orNone((v) => v)))
    .addOption(scopeOption("the scopes of its current version (replaces them)"))
    .addOption(
      new Option("--expires-at <time>", "ISO-8601 time, or none").argParser(orNone(parseTime(1))),
    )
    .addOption(new Option("--expires-in <duration>", "lifetime from now").argParser(parseTime(1)))
    .addOption(
      new Option("--rate-limit <limit/period>", "e.g. 100/60, or none").argParser(
        orNone(parseRateLimit),
      ),
    )
    .addOption(
      new Option("--metadata <json>", "a JSON object, or none").argParser(orNone(parseJsonObject)),
    )
    .action(async (id: string, options: KeyOptions, command: Command) => {
      const body = keyBody(options);
      if (Object.keys(body).length === 0) {
        throw new UsageError("nothing to update: pass at least one of the options (see --help)");
      }
      const ctx = contextOf(command);
      const key = await ctx.api<Key>("PATCH", keyPath(id), { body });
      ctx.emit(key, (k) => print(...keyFields(k)));
    });

  keys
    .command("rotate")
    .description(
      "issue a new secret as version n+1; the old one keeps working for the grace window",
    )
    .argument("<key-id>", "key id")
    .addOption(
      new Option(
        "--grace <duration>",
        "grace window of the old secret, e.g. 7d (default: the server's)",
      )
        .argParser(parseDuration)
        .conflicts("emergency"),
    )
    .option(
      "--grace-starts-on-first-use",
      "start the grace clock when the new secret is first used",
    )
    .addOption(
      new Option(
        "--complete-when-idle <duration>",
        "let the server retire the old secret once it has been idle this long",
      ).argParser(parseDuration),
    )
    .addOption(
      new Option("--emergency", "revoke the old secret at once (no grace)").conflicts("waitIdle"),
    )
    .addOption(scopeOption("scopes of the new version (default: the current ones)"))
    .addOption(
      new Option("--expires-at <time>", "expiry of the new version").argParser(parseTime(1)),
    )
    .addOption(
      new Option("--expires-in <duration>", "lifetime of the new version").argParser(parseTime(1)),
    )
    .option(
      "--wait-idle",
      "then watch the traffic and complete the rotation once the new secret is in use and the old one has gone quiet",
    )
    .addOption(
      new Option("--idle-seconds <duration>", "how long the old secret must be quiet")
        .argParser(parseDuration)
        .default(300, "300 (5m)"),
    )
    .addOption(
      new Option("--timeout <duration>", "give up waiting after this long (exit 1)")
        .argParser(parseDuration)
        .default(3600, "3600 (1h)"),
    )
    .addOption(
      new Option("--interval <seconds>", "how often to look at the traffic")
        .argParser(parseSeconds)
        .default(2),
    )
    .action(async (id: string, options: RotateOptions, command: Command) => {
      const ctx = contextOf(command);
      const issued = await ctx.api<IssuedKey & { rotation: Rotation | null }>(
        "POST",
        `${keyPath(id)}/rotate`,
        { body: rotateBody(options) },
      );
      ctx.emit(issued, ({ key: secret, ...key }) => {
        // a rotation says which key and versions; without one (nothing to keep in grace) the key does
        print(...(key.rotation ? rotationFields(key.rotation) : keyFields(key)));
        printSecret(secret);
      });
      if (!options.waitIdle) return;
      if (!issued.rotation || issued.rotation.state !== "in_progress") {
        note("No rotation is open (nothing in grace): nothing to wait for.");
        return;
      }
      const rotation = await waitIdleThenComplete(ctx, issued.rotation.id, {
        idleMs: options.idleSeconds * 1000,
        timeoutMs: options.timeout * 1000,
        intervalMs: options.interval * 1000,
      });
      ctx.emit(rotation, (r) => print("", ...rotationFields(r)));
    });

  keys
    .command("complete")
    .description("retire the old secret of a rotation now")
    .argument("<id>", "rotation id (rot_…), or a key id with a rotation in progress")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const rotation = await rotationAction(ctx, id, "complete");
      ctx.emit(rotation, (r) => print(...rotationFields(r)));
    });

  keys
    .command("rollback")
    .description("revoke a rotation's new secret and restore the old one")
    .argument("<id>", "rotation id (rot_…), or a key id with a rotation in progress")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const rotation = await rotationAction(ctx, id, "rollback");
      ctx.emit(rotation, (r) => print(...rotationFields(r)));
    });

  keys
    .command("extend")
    .description("move a rotation's grace window later")
    .argument("<id>", "rotation id (rot_…), or a key id with a rotation in progress")
    .addOption(
      new Option("--by <duration>", "how much later, e.g. 3d")
        .argParser(parseDuration)
        .makeOptionMandatory(),
    )
    .action(async (id: string, options: { by: number }, command: Command) => {
      const ctx = contextOf(command);
      const rotation = await rotationAction(ctx, id, "extend", { gracePeriodSeconds: options.by });
      ctx.emit(rotation, (r) => print(...rotationFields(r)));
    });

  keys
    .command("revoke")
    .description("revoke every version of a key, at once")
    .argument("<key-id>", "key id")
    .option("--reason <text>", "why (kept in the audit log)")
    .option("-y, --yes", "do not ask for confirmation")
    .action(async (id: string, options: { reason?: string; yes?: boolean }, command: Command) => {
      const ctx = contextOf(command);
      await confirmOrRefuse(`Revoke every version of key ${id}?`, options.yes);
      const key = await ctx.api<Key>("POST", `${keyPath(id)}/revoke`, {
        body: options.reason !== undefined ? { reason: options.reason } : {},
      });
      ctx.emit(key, (k) => print(...keyFields(k)));
    });
}
