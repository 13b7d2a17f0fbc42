import { Option, type Command } from "commander";
import { parsePositiveInt } from "./arguments.js";
import type { Page } from "./api-types.js";
import type { CliContext } from "./context.js";
import type { Query } from "./client.js";
import { note } from "./output.js";

/** Cursor pagination for list commands: `--limit`, `--cursor`, or `--all` pages. */
export interface PageOptions {
  limit?: number;
  cursor?: string;
  all?: boolean;
}

export function withPageOptions(command: Command): Command {
  return command
    .addOption(new Option("--limit <n>", "items per page (1-100)").argParser(parsePositiveInt))
    .option("--cursor <cursor>", "the page after this cursor (nextCursor of the previous page)")
    .addOption(new Option("--all", "follow nextCursor to the last page").conflicts("cursor"));
}

/** One page, or with `--all` every page joined (then `nextCursor` is null). */
export async function fetchPage<T>(
  ctx: CliContext,
  path: string,
  options: PageOptions,
  query: Query = {},
): Promise<Page<T>> {
  if (!options.all) {
    return ctx.api<Page<T>>("GET", path, {
      query: { ...query, limit: options.limit, cursor: options.cursor },
    });
  }
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await ctx.api<Page<T>>("GET", path, {
      query: { ...query, limit: options.limit ?? 100, cursor },
    });
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return { items, nextCursor: null };
}

/** Tells people how to get the next page. */
export function noteNextPage(page: Page<unknown>): void {
  if (page.items.length === 0) note("(none)");
  if (page.nextCursor) note(`more: --cursor ${page.nextCursor} (or --all)`);
}
