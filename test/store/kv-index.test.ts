import { env } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_EXPIRES_AT } from "../../src/domain/key-state";
import {
  EXPIRED_RETENTION_MS,
  KV_MAX_EXPIRATION,
  projectVersion,
} from "../../src/domain/secret-record";
import { writeProjection } from "../../src/store/kv-index";
import { DAY, keyRecord, version } from "../domain/fixtures";

/**
 * The KV expiration of a projected record: what workerd's KV binding takes (a signed 32-bit
 * number of epoch seconds), for every expiresAt and graceUntil the API can produce.
 */

const NO_LIMITS = { rateLimit: null, monthlyQuota: null };
/** The last expiresAt whose record still gets a KV expiration: 2037-12-20T03:14:07Z. */
const CAP_BOUNDARY = KV_MAX_EXPIRATION * 1000 - EXPIRED_RETENTION_MS;
const NOW = Date.UTC(2026, 0, 1);

function project(overrides: Parameters<typeof version>[1]) {
  return projectVersion(keyRecord(), version(1, overrides), null, NOW, NO_LIMITS);
}

describe("projectVersion's KV expiration", () => {
  it("is 30 days after expiresAt while that fits KV, up to KV's latest expiration", () => {
    expect(project({ expiresAt: NOW + DAY }).expiration).toBe((NOW + DAY + 30 * DAY) / 1000);
    expect(project({ expiresAt: CAP_BOUNDARY }).expiration).toBe(KV_MAX_EXPIRATION);
  });

  it("is left out, with the record kept, past KV's latest expiration", () => {
    for (const expiresAt of [CAP_BOUNDARY + 1, Date.UTC(2040, 0, 1), MAX_EXPIRES_AT]) {
      const projection = project({ expiresAt });
      expect(projection.expiration).toBeNull();
      expect(projection.record).toMatchObject({ status: "active", expiresAt });
    }
  });

  it("follows graceUntil for a version in grace, by the same rule", () => {
    const expiresAt = Date.UTC(2100, 0, 1);
    const soon = project({ status: "grace", expiresAt, graceUntil: NOW + DAY });
    expect(soon.expiration).toBe((NOW + 31 * DAY) / 1000);
    const late = project({ status: "grace", expiresAt, graceUntil: Date.UTC(2050, 0, 1) });
    expect(late.expiration).toBeNull();
    expect(late.record).toMatchObject({ status: "grace", graceUntil: Date.UTC(2050, 0, 1) });
  });

  it("is never one KV would refuse, for any expiresAt and graceUntil up to the maximum", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: NOW + 1, max: MAX_EXPIRES_AT }),
        fc.option(fc.integer({ min: NOW + 1, max: MAX_EXPIRES_AT })),
        (expiresAt, graceUntil) => {
          const { expiration } =
            graceUntil === null
              ? project({ expiresAt })
              : project({ status: "grace", expiresAt, graceUntil });
          if (expiration === null) return;
          expect(Number.isInteger(expiration)).toBe(true);
          expect(expiration).toBeGreaterThan(NOW / 1000);
          expect(expiration).toBeLessThanOrEqual(KV_MAX_EXPIRATION);
        },
      ),
    );
  });

  it("is taken by the real KV binding at the boundary, just past it and at the maximum", async () => {
    for (const expiresAt of [CAP_BOUNDARY, CAP_BOUNDARY + 1, MAX_EXPIRES_AT]) {
      const hash = `projection-edge-${expiresAt}`;
      await writeProjection(env.KEYS, hash, project({ expiresAt, secretHash: hash }));
      const listed = await env.KEYS.list({ prefix: `secret:v1:${hash}` });
      expect(listed.keys).toHaveLength(1);
      expect(listed.keys[0]!.expiration).toBe(
        expiresAt === CAP_BOUNDARY ? KV_MAX_EXPIRATION : undefined,
      );
    }
  });
});
