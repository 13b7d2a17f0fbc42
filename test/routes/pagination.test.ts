import { describe, expect, it } from "vitest";
import { admin, newConsumer, newKey, type Json } from "../support/api";

/** Every cursor-paginated list, with a parent that has at least three items. */
async function lists(): Promise<string[]> {
  const consumer = await newConsumer("paged");
  for (let i = 0; i < 2; i++) await newConsumer("paged");
  const key = await newKey(["prices:read"], {}, consumer);
  for (let i = 0; i < 2; i++) await newKey(["prices:read"], {}, consumer);
  for (let i = 0; i < 3; i++) {
    const rotated = await admin.post(`/keys/${key.id}/rotate`, { gracePeriodSeconds: 0 });
    expect(rotated.status).toBe(201);
  }
  return [
    "/consumers?",
    `/consumers/${consumer}/keys?`,
    `/keys/${key.id}/rotations?`,
    `/audit?keyId=${key.id}&`,
  ];
}

/** Every list, and a cursor it issued for its own next page. */
async function listsWithCursors(): Promise<[string, string][]> {
  const withCursors: [string, string][] = [];
  for (const list of await lists()) {
    const page = await admin.get(`${list}limit=1`);
    expect(page.body.nextCursor, list).toEqual(expect.any(String));
    withCursors.push([list, page.body.nextCursor as string]);
  }
  return withCursors;
}

/** `text` with the character at `at` replaced by another base64url character. */
function changedAt(text: string, at: number): string {
  const other = text[at] === "A" ? "B" : "A";
  return text.slice(0, at) + other + text.slice(at + 1);
}

async function expectRefused(list: string, cursor: string) {
  const res = await admin.get(`${list}cursor=${encodeURIComponent(cursor)}`);
  expect(res.status, `${list} ${cursor.slice(0, 80)}`).toBe(400);
  expect(res.body.code).toBe("validation_failed");
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
}

const cursorOf = (value: unknown) =>
  btoa(JSON.stringify(value)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

describe("cursor pagination (every list)", () => {
  it("pages through a list without repeats, ending with nextCursor null", async () => {
    for (const list of await lists()) {
      const whole = await admin.get(`${list}limit=100`);
      const expected = (whole.body.items as Json[]).map((item) => item.id);
      expect(expected.length, list).toBeGreaterThanOrEqual(3);
      const seen: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page = await admin.get(
          `${list}limit=2${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
        );
        expect(page.status, list).toBe(200);
        expect((page.body.items as Json[]).length).toBeLessThanOrEqual(2);
        seen.push(...(page.body.items as Json[]).map((item) => item.id));
        cursor = page.body.nextCursor as string | null;
      } while (cursor !== null && seen.length <= expected.length);
      expect(seen, list).toEqual(expected);
    }
  });

  it.each([
    ["not base64", "%25%25%25"],
    ["base64 of text", cursorOf("hello")],
    ["the wrong shape", cursorOf({ at: 1, id: "x" })],
    ["a non-integer time", cursorOf([1.5, "x"])],
    ["an id that is too long", cursorOf([1, "x".repeat(65)])],
    ["an empty value", ""],
  ])("refuses a cursor that is %s with 400 validation_failed", async (_label, cursor) => {
    for (const list of await lists()) {
      const res = await admin.get(`${list}cursor=${cursor}`);
      expect(res.status, list).toBe(400);
      expect(res.body.code).toBe("validation_failed");
      expect(res.headers.get("Content-Type")).toBe("application/problem+json");
    }
  });

  it("refuses a cursor Keygate did not issue, or issued and then altered", async () => {
    const listed = await listsWithCursors();
    // the deliveries list of a consumer with no webhook has no next page: it gets the others'
    const deliveries = `/consumers/${await newConsumer("no hooks")}/webhooks?`;
    for (const [list, cursor] of [...listed, [deliveries, listed[0]![1]] as const]) {
      const [position, tag] = cursor.split(".") as [string, string];
      const forged = cursorOf([Date.now(), "csm_forged0000000000"]);
      for (const refused of [
        changedAt(cursor, 3), // the position
        changedAt(cursor, cursor.length - 5), // the tag
        `${position}.${changedAt(tag, 0)}`,
        position, // unsigned, as cursors were before they were signed
        forged,
        `${forged}.${tag}`,
        `${forged}.${"A".repeat(43)}`,
        `${cursor}x`,
        `${cursor}.`,
        "garbage",
        "",
        "x".repeat(10_000),
        `${position}.${tag}`.repeat(2),
      ]) {
        await expectRefused(list, refused);
      }
    }
  });

  it("refuses a cursor issued for another list, a parent's other children included", async () => {
    const listed = await listsWithCursors();
    const other = await newConsumer("other");
    for (let i = 0; i < 2; i++) await newKey(["prices:read"], {}, other);
    for (const [list] of listed) {
      for (const [from, cursor] of listed) {
        if (from !== list) await expectRefused(list, cursor);
      }
    }
    const [, keysCursor] = listed.find(([list]) => list.includes("/keys?"))!;
    await expectRefused(`/consumers/${other}/keys?`, keysCursor);
  });

  it("accepts a cursor whatever the filters of the same list (a position, nothing more)", async () => {
    const listed = await listsWithCursors();
    const [list, cursor] = listed.find(([l]) => l.startsWith("/audit"))!;
    const filtered = await admin.get(`/audit?action=key.rotated&cursor=${cursor}`);
    expect(filtered.status, list).toBe(200);
    expect((filtered.body.items as Json[]).every((e) => e.action === "key.rotated")).toBe(true);
  });

  it.each(["0", "101", "-1", "1.5", "ten", ""])(
    "refuses limit=%j with 400 validation_failed",
    async (limit) => {
      for (const list of await lists()) {
        const res = await admin.get(`${list}limit=${limit}`);
        expect(res.status, list).toBe(400);
        expect(res.body.code).toBe("validation_failed");
      }
    },
  );

  it("accepts limit 1 and 100, and defaults to 20", async () => {
    for (const list of await lists()) {
      expect((await admin.get(`${list}limit=1`)).body.items, list).toHaveLength(1);
      expect((await admin.get(`${list}limit=100`)).status, list).toBe(200);
    }
    for (let i = 0; i < 21; i++) await newConsumer("many");
    const page = await admin.get("/consumers");
    expect(page.body.items).toHaveLength(20);
    expect(page.body.nextCursor).toEqual(expect.any(String));
  });
});
