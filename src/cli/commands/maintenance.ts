import type { Command } from "commander";
import type { MaintenanceReport } from "../api-types.js";
import { contextOf } from "../context.js";
import { EXIT } from "../errors.js";
import { fields, note, print, table } from "../output.js";

const walk = (state: "complete" | "continues") =>
  state === "complete" ? "walk complete" : "walk continues next run";

/**
 * A maintenance report for people: the counts, then one row per change, then one per failure
 * (tables only when there is something to list).
 */
export function reportLines(report: MaintenanceReport): string[] {
  const { reconciliation: rec } = report;
  const lines = fields([
    ["started", report.startedAt],
    ["took", `${Date.parse(report.finishedAt) - Date.parse(report.startedAt)} ms`],
    ["changes", report.changes],
    ["rotations completed", report.rotationsCompleted.length],
    ["versions expired", report.versionsExpired.length],
    ["reminders sent", report.reminders.length],
    ["keys checked", `${rec.keysChecked} (${walk(rec.keysWalk)})`],
    ["KV records listed", `${rec.recordsListed} (${walk(rec.kvWalk)})`],
    ["KV records fixed", rec.fixed.length],
    [
      "rows pruned",
      `${report.pruned.idempotencyRecords} idempotency records, ${report.pruned.webhookDeliveries} webhook deliveries`,
    ],
    ["failures", report.failures.length],
  ]);
  const changes: unknown[][] = [
    ...report.rotationsCompleted.map((r) => [
      "rotation completed",
      r.consumerId,
      r.keyId,
      null,
      r.rotationId,
    ]),
    ...report.versionsExpired.map((v) => [
      "version expired",
      v.consumerId,
      v.keyId,
      v.version,
      null,
    ]),
    ...report.reminders.map((r) => [r.type, r.consumerId, r.keyId, r.version, r.rotationId]),
    ...rec.fixed.map((f) => [
      `record ${f.drift}`,
      f.consumerId,
      f.keyId,
      f.version,
      f.queued ? "queued: the consumer's coordinator retries it" : null,
    ]),
  ];
  if (changes.length > 0) {
    lines.push("", ...table(["change", "consumer", "key", "version", "detail"], changes));
  }
  if (report.failures.length > 0) {
    lines.push(
      "",
      ...table(
        ["failed step", "consumer", "key", "error"],
        report.failures.map((f) => [f.step, f.consumerId, f.keyId, f.error]),
      ),
    );
  }
  return lines;
}

/** `keygate maintenance run`: the scheduled maintenance pass, now. */
export function registerMaintenance(program: Command): void {
  const maintenance = program.command("maintenance").description("run scheduled maintenance now");

  maintenance
    .command("run")
    .description(
      "close ended rotations, expire keys, send due reminders, reconcile KV with D1 and prune expired rows, now; exit 1 if a step failed",
    )
    .action(async (_options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const report = await ctx.api<MaintenanceReport>("POST", "/maintenance/run", { body: {} });
      ctx.emit(report, (r) => print(...reportLines(r)));
      if (report.failures.length > 0) {
        note(`${report.failures.length} failed; the next run (or this command again) retries.`);
        process.exitCode = EXIT.failure;
      }
    });
}
