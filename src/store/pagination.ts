/**
 * Cursor pagination over `(created_at, id)`, newest first. Here a cursor is a page's position,
 * base64url of `[createdAt, id]`; clients only ever see it signed (`cursors.ts`), and the
 * routes open a signed cursor before it reaches a query.
 */
export interface PageRequest {
  limit: number;
  cursor?: string | undefined;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Position {
  at: number;
  id: string;
}

export function encodeCursor(position: Position): string {
  return btoa(JSON.stringify([position.at, position.id]))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** The position a cursor names, or null when it is not one of ours. */
export function decodeCursor(cursor: string): Position | null {
  try {
    const padded = cursor.replaceAll("-", "+").replaceAll("_", "/");
    const value: unknown = JSON.parse(atob(padded));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      Number.isSafeInteger(value[0]) &&
      typeof value[1] === "string" &&
      value[1].length <= 64
    ) {
      return { at: value[0] as number, id: value[1] };
    }
  } catch {
    // fall through: not a cursor we issued
  }
  return null;
}

/** Cuts a result fetched with `limit + 1` rows into a page. */
export function toPage<T>(rows: T[], limit: number, positionOf: (row: T) => Position): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items,
    nextCursor: rows.length > limit && last ? encodeCursor(positionOf(last)) : null,
  };
}

/**
 * Runs `select` (a SELECT with a WHERE clause, `WHERE 1 = 1` at least) for one page, newest
 * first by `(atColumn, id)`, fetching one row more than the page to know whether another
 * follows.
 */
export async function selectPage(
  db: D1Database,
  select: string,
  bound: (string | number)[],
  atColumn: string,
  page: PageRequest,
): Promise<Record<string, unknown>[]> {
  const after = page.cursor === undefined ? null : decodeCursor(page.cursor);
  // routes validate cursors (PageQuery); never fall back to the first page on a bad one
  if (page.cursor !== undefined && after === null) throw new RangeError("malformed cursor");
  const cursorClause = after ? ` AND (${atColumn}, id) < (?, ?)` : "";
  const cursorValues = after ? [after.at, after.id] : [];
  const rows = await db
    .prepare(`${select}${cursorClause} ORDER BY ${atColumn} DESC, id DESC LIMIT ?`)
    .bind(...bound, ...cursorValues, page.limit + 1)
    .all();
  return rows.results;
}
