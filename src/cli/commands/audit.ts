import type { Command } from "commander";
import type { AuditEvent, Page } from "../api-types.js";
import { contextOf } from "../context.js";
import { print, table } from "../output.js";
import { fetchPage, noteNextPage, withPageOptions, type PageOptions } from "../pages.js";

interface AuditOptions extends PageOptions {
  consumer?: string;
  key?: string;
  action?: string;
}

/** `keygate audit`: who changed what, newest first. */
export function registerAudit(program: Command): void {
  withPageOptions(
    program
      .command("audit")
      .description("audit events, newest first")
      .option("--consumer <id>", "only events of this consumer")
      .option("--key <id>", "only events of this key")
      .option("--action <action>", "only this action, e.g. key.rotated"),
  ).action(async (options: AuditOptions, command: Command) => {
    const ctx = contextOf(command);
    const page = await fetchPage<AuditEvent>(ctx, "/audit", options, {
      consumerId: options.consumer,
      keyId: options.key,
      action: options.action,
    });
    ctx.emit(page, (p: Page<AuditEvent>) => {
      print(
        ...table(
          ["at", "actor", "action", "target", "request"],
          p.items.map((e) => [e.at, e.actor, e.action, e.target, e.requestId]),
        ),
      );
      noteNextPage(p);
    });
  });
}
