import { InvalidArgumentError } from "commander";
import type { RateLimit } from "./api-types.js";

/** Parsers for option values; a bad value is a usage error naming what was expected. */

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** Seconds from `90`, `90s`, `15m`, `12h`, `7d` or `2w`. */
export function parseDuration(value: string): number {
  const match = /^(\d+)\s*([smhdw]?)$/i.exec(value.trim());
  if (!match) {
    throw new InvalidArgumentError("expected seconds or a duration such as 90s, 15m, 12h, 7d, 2w");
  }
  return Number(match[1]) * (UNIT_SECONDS[(match[2] || "s").toLowerCase()] ?? 1);
}

/** A positive whole number. */
export function parsePositiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) {
    throw new InvalidArgumentError("expected a whole number of at least 1");
  }
  return Number(value);
}

/** A positive number of seconds, fractions allowed (poll intervals). */
export function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new InvalidArgumentError("expected a number of seconds above 0");
  }
  return seconds;
}

/** An ISO-8601 time, or a duration meaning that long from `now` (`sign` -1: ago). */
export function parseTime(sign: 1 | -1, now: () => number = Date.now) {
  return (value: string): string => {
    if (/^\d+\s*[smhdw]?$/i.test(value.trim())) {
      return new Date(now() + sign * parseDuration(value) * 1000).toISOString();
    }
    if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(Date.parse(value))) {
      throw new InvalidArgumentError(
        `expected an ISO-8601 time (2027-01-01T00:00:00Z) or a duration (${sign > 0 ? "30d" : "24h"})`,
      );
    }
    return new Date(Date.parse(value)).toISOString();
  };
}

/** `<limit>/<period>`: `100/60`, `1000/1h`. */
export function parseRateLimit(value: string): RateLimit {
  const match = /^(\d+)\s*\/\s*(\S+)$/.exec(value.trim());
  if (!match || Number(match[1]) < 1) {
    throw new InvalidArgumentError("expected <limit>/<period>, e.g. 100/60 or 1000/1h");
  }
  return { limit: Number(match[1]), periodSeconds: parseDuration(match[2]!) };
}

/** A JSON object (`--metadata '{"plan":"pro"}'`). */
export function parseJsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('expected a JSON object, e.g. \'{"plan":"pro"}\'');
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError('expected a JSON object, e.g. \'{"plan":"pro"}\'');
  }
  return parsed as Record<string, unknown>;
}

/** What `none` parses to: clear the field (commander turns a parsed null into ""). */
export const CLEAR = Symbol("none");

/** A parser that also takes `none`, meaning: clear the field. */
export function orNone<T>(parse: (value: string) => T) {
  return (value: string): T | typeof CLEAR =>
    value.trim().toLowerCase() === "none" ? CLEAR : parse(value);
}

/** The JSON value of an option: `none` becomes null. */
export function cleared<T>(value: T | typeof CLEAR): T | null {
  return value === CLEAR ? null : value;
}

/** A request body of the named options that were given (`none` as null). */
export function bodyOf(options: object, names: readonly string[]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const name of names) {
    const value: unknown = (options as Record<string, unknown>)[name];
    if (value !== undefined) body[name] = cleared(value);
  }
  return body;
}

/** Collects a repeatable option; each value may itself list several, comma- or space-separated. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(/[\s,]+/).filter(Boolean)];
}
