/** Small shared conversions between D1 rows and domain values. */

export function jsonOrNull<T>(text: unknown): T | null {
  return typeof text === "string" ? (JSON.parse(text) as T) : null;
}

export function toJson(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

export function numberOrNull(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}

export function stringOrNull(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}
