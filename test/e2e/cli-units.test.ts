import { stripVTControlCharacters } from "node:util";
import { describe, expect, it } from "vitest";
import { parseDuration, parseRateLimit, parseTime } from "../../src/cli/arguments.js";
import { parseDevVars } from "../../src/cli/dev-vars.js";
import { idleVerdict, observe } from "../../src/cli/idle-watch.js";
import type { MaintenanceReport, Rotation } from "../../src/cli/api-types.js";
import { reportLines } from "../../src/cli/commands/maintenance.js";
import { rotationFields } from "../../src/cli/commands/rotations.js";
import { duration } from "../../src/duration.js";
import { rateLimitText } from "../../src/cli/output.js";
import { withBindingField } from "../../src/cli/wrangler-config.js";
import { d1IdFrom, kvIdFrom, pendingMigrationsFrom } from "../../src/cli/wrangler.js";

/** The CLI's pure parts: the idle rule of --wait-idle, argument parsing, wrangler I/O. */

function rotation(oldRequests: number, newRequests: number, state = "in_progress"): Rotation {
  return {
    id: "rot_1",
    keyId: "k",
    consumerId: "c",
    state: state as Rotation["state"],
    fromVersion: 1,
    toVersion: 2,
    startedAt: "2026-01-01T00:00:00.000Z",
    graceUntil: null,
    graceStartsOnFirstUse: false,
    completeWhenIdleSeconds: null,
    firstUsedAt: null,
    endedAt: null,
    endReason: null,
    usage: {
      old: { requests: oldRequests, lastUsedAt: null },
      new: { requests: newRequests, lastUsedAt: null },
    },
  };
}

describe("the --wait-idle rule", () => {
  it("waits for the new secret's first use however quiet the old one is", () => {
    const watch = observe(null, rotation(0, 0), 0);
    expect(idleVerdict(watch, rotation(0, 0), 1e9, 1000).kind).toBe("waiting_for_new");
  });

  it("completes once the old secret's count has not moved for the idle time", () => {
    let watch = observe(null, rotation(5, 1), 0);
    expect(idleVerdict(watch, rotation(5, 1), 999, 1000)).toMatchObject({ kind: "old_in_use" });
    watch = observe(watch, rotation(5, 2), 1000);
    expect(idleVerdict(watch, rotation(5, 2), 1000, 1000)).toEqual({ kind: "idle", quietMs: 1000 });
  });

  it("restarts the quiet clock whenever the old secret is used again", () => {
    let watch = observe(null, rotation(5, 1), 0);
    watch = observe(watch, rotation(6, 1), 900);
    expect(watch.quietSince).toBe(900);
    expect(idleVerdict(watch, rotation(6, 1), 1500, 1000)).toMatchObject({
      kind: "old_in_use",
      quietMs: 600,
    });
  });

  it("reports a rotation that ended some other way", () => {
    const watch = observe(null, rotation(0, 0), 0);
    expect(idleVerdict(watch, rotation(0, 0, "rolled_back"), 0, 1000)).toEqual({
      kind: "ended",
      state: "rolled_back",
    });
  });
});

describe("argument parsing", () => {
  it("reads durations, rate limits and relative times", () => {
    expect(parseDuration("90")).toBe(90);
    expect(parseDuration("15m")).toBe(900);
    expect(parseDuration("7d")).toBe(604_800);
    expect(() => parseDuration("soon")).toThrow(/duration/);
    expect(parseRateLimit("100/1m")).toEqual({ limit: 100, periodSeconds: 60 });
    expect(() => parseRateLimit("0/60")).toThrow(/limit/);
    expect(parseTime(-1, () => Date.parse("2026-01-02T00:00:00Z"))("24h")).toBe(
      "2026-01-01T00:00:00.000Z",
    );
    expect(() => parseTime(1)("tomorrow")).toThrow(/ISO-8601/);
  });
});

describe("durations for people", () => {
  it("says a number of seconds in days, hours, minutes and seconds", () => {
    expect(duration(8_902_800)).toBe("103d 1h");
    expect(duration(7_776_000)).toBe("90d");
    expect(duration(5400)).toBe("1h 30m");
    expect(duration(90)).toBe("1m 30s");
    expect(duration(1)).toBe("1s");
    expect(duration(0)).toBe("0s");
  });

  it("shows rate-limit periods and idle windows as durations", () => {
    expect(rateLimitText({ limit: 100, periodSeconds: 60 })).toBe("100/1m");
    expect(rateLimitText({ limit: 1000, periodSeconds: 86_400 })).toBe("1000/1d");
    const lines = rotationFields({ ...rotation(0, 0), completeWhenIdleSeconds: 5400 }).map((l) =>
      stripVTControlCharacters(l),
    );
    expect(lines).toContainEqual(expect.stringMatching(/^complete when idle\s+1h 30m$/));
  });
});

describe("the maintenance report for people", () => {
  const quiet: MaintenanceReport = {
    startedAt: "2026-05-01T12:00:00.000Z",
    finishedAt: "2026-05-01T12:00:00.180Z",
    changes: 0,
    rotationsCompleted: [],
    versionsExpired: [],
    reminders: [],
    reconciliation: {
      keysChecked: 42,
      recordsListed: 57,
      fixed: [],
      keysWalk: "complete",
      kvWalk: "continues",
    },
    pruned: { idempotencyRecords: 0, webhookDeliveries: 0 },
    failures: [],
  };

  it("counts what a pass did, and lists nothing when it did nothing", () => {
    const text = stripVTControlCharacters(reportLines(quiet).join("\n"));
    expect(text).toMatch(/^took\s+180 ms$/m);
    expect(text).toMatch(/^keys checked\s+42 \(walk complete\)$/m);
    expect(text).toMatch(/^KV records listed\s+57 \(walk continues next run\)$/m);
    expect(text).toMatch(/^rows pruned\s+0 idempotency records, 0 webhook deliveries$/m);
    expect(text).not.toMatch(/CHANGE|FAILED STEP/);
  });

  it("lists each change and each failure as a row", () => {
    const text = stripVTControlCharacters(
      reportLines({
        ...quiet,
        changes: 3,
        rotationsCompleted: [{ consumerId: "csm_a", keyId: "k1", rotationId: "rot_1" }],
        reminders: [
          { type: "key.expiring", consumerId: "csm_b", keyId: "k2", version: 3, rotationId: null },
        ],
        reconciliation: {
          ...quiet.reconciliation,
          fixed: [{ consumerId: null, keyId: "k3", version: 1, drift: "orphan", queued: true }],
        },
        failures: [{ step: "webhooks", consumerId: "csm_c", keyId: null, error: "conflict: x" }],
      }).join("\n"),
    );
    expect(text).toMatch(/^CHANGE\s+CONSUMER\s+KEY\s+VERSION\s+DETAIL$/m);
    expect(text).toMatch(/^rotation completed\s+csm_a\s+k1\s+-\s+rot_1$/m);
    expect(text).toMatch(/^key\.expiring\s+csm_b\s+k2\s+3\s+-$/m);
    expect(text).toMatch(/^record orphan\s+-\s+k3\s+1\s+queued: /m);
    expect(text).toMatch(/^FAILED STEP\s+CONSUMER\s+KEY\s+ERROR$/m);
    expect(text).toMatch(/^webhooks\s+csm_c\s+-\s+conflict: x$/m);
  });
});

describe("wrangler I/O", () => {
  it("writes a binding's id into its own block only, keeping comments", () => {
    const toml = [
      "# keygate",
      "[[kv_namespaces]]",
      'binding = "OTHER"',
      'id = "11111111111111111111111111111111"',
      "",
      "[[kv_namespaces]]",
      'binding = "KEYS" # the edge index',
      'id = "00000000000000000000000000000000"',
      "",
      "[vars]",
      'id = "not this one"',
    ].join("\n");
    const next = withBindingField(toml, "kv_namespaces", "KEYS", "id", "a".repeat(32));
    expect(next).toContain('binding = "KEYS" # the edge index\nid = "' + "a".repeat(32) + '"');
    expect(next).toContain('id = "11111111111111111111111111111111"');
    expect(next).toContain('id = "not this one"');
    expect(next).toContain("# keygate");
  });

  it("reads the ids wrangler prints, in TOML or JSON", () => {
    expect(kvIdFrom('[[kv_namespaces]]\nbinding = "KEYS"\nid = "' + "b".repeat(32) + '"')).toBe(
      "b".repeat(32),
    );
    expect(kvIdFrom('{ "binding": "KEYS", "id": "' + "c".repeat(32) + '" }')).toBe("c".repeat(32));
    const uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    expect(d1IdFrom(`database_id = "${uuid}"`)).toBe(uuid);
    expect(d1IdFrom(`"database_id": "${uuid}"`)).toBe(uuid);
  });

  it("reads pending migrations from wrangler d1 migrations list", () => {
    expect(pendingMigrationsFrom("✅ No migrations to apply!")).toEqual([]);
    expect(
      pendingMigrationsFrom("│ Name          │\n├──┤\n│ 0001_core.sql │\n│ 0002_more.sql │"),
    ).toEqual(["0001_core.sql", "0002_more.sql"]);
    expect(pendingMigrationsFrom("✘ [ERROR] something else")).toBeNull();
  });

  it("reads .dev.vars as wrangler does", () => {
    expect(
      parseDevVars(
        [
          "# local",
          'ADMIN_TOKEN="abc def"',
          "KEY_PREFIX=live # comment",
          "ROUTE_RULES='[",
          '  {"path": "/x"}',
          "]'",
        ].join("\n"),
      ),
    ).toEqual({
      ADMIN_TOKEN: "abc def",
      KEY_PREFIX: "live",
      ROUTE_RULES: '[\n  {"path": "/x"}\n]',
    });
  });
});
