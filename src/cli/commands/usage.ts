import { Option, type Command } from "commander";
import { parseTime } from "../arguments.js";
import type { KeyUsage } from "../api-types.js";
import { contextOf } from "../context.js";
import { note, print, table } from "../output.js";
import { keyPath } from "../paths.js";

/** `keygate usage`: a key's hourly request counts, per version. */
export function registerUsage(program: Command): void {
  program
    .command("usage")
    .description("a key's hourly request counts per version")
    .argument("<key-id>", "key id")
    .addOption(
      new Option(
        "--from <time>",
        "start: ISO-8601 time or how long ago, e.g. 7d (default: 24h before --to)",
      ).argParser(parseTime(-1)),
    )
    .addOption(
      new Option("--to <time>", "end: ISO-8601 time or how long ago (default: now)").argParser(
        parseTime(-1),
      ),
    )
    .action(async (keyId: string, options: { from?: string; to?: string }, command: Command) => {
      const ctx = contextOf(command);
      const usage = await ctx.api<KeyUsage>("GET", `${keyPath(keyId)}/usage`, {
        query: { from: options.from, to: options.to },
      });
      ctx.emit(usage, (u) => {
        const versions = [...new Set(u.items.flatMap((i) => Object.keys(i.versions)))].sort(
          (a, b) => Number(a) - Number(b),
        );
        print(
          ...table(
            ["hour", "requests", ...versions.map((v) => `v${v}`)],
            u.items.map((i) => [i.hour, i.requests, ...versions.map((v) => i.versions[v] ?? 0)]),
          ),
        );
        if (u.items.length === 0) note("(no requests)");
        print(`total ${u.total} requests from ${u.from} to ${u.to}`);
      });
    });
}
