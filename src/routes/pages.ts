import type { Context } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";
import { cursorKey, openCursor, sealCursor } from "../store/cursors";
import type { Page, PageRequest } from "../store/pagination";
import { read } from "./coordinator-call";

const NOT_ISSUED = "not a cursor this API issued for this list";

/**
 * One page of a cursor-paginated list. `list` names the list, ids included (`consumers/<id>/
 * keys`), and the cursor is signed for it: a cursor Keygate did not issue, or issued for
 * another list, is 400 `validation_failed`. The signing key is read (once per isolate) only
 * when a cursor comes in or another page follows.
 */
export async function listPage<T>(
  c: Context<AppEnv>,
  list: string,
  query: PageRequest,
  load: (page: PageRequest) => Promise<Page<T>>,
): Promise<Page<T>> {
  const key = () => read(() => cursorKey(c.env.DB));
  let position: string | undefined;
  if (query.cursor !== undefined) {
    position = (await openCursor(await key(), list, query.cursor)) ?? undefined;
    if (position === undefined) {
      throw new KeygateError("validation_failed", {
        detail: `query cursor: ${NOT_ISSUED}`,
        extensions: { errors: [{ path: "cursor", message: NOT_ISSUED }] },
      });
    }
  }
  const page = await read(() => load({ limit: query.limit, cursor: position }));
  if (page.nextCursor === null) return page;
  return { items: page.items, nextCursor: await sealCursor(await key(), list, page.nextCursor) };
}
