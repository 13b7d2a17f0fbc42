import type { RouteRule } from "../config";

/**
 * `ROUTE_RULES` matching: the first rule whose method and path match wins. A path ending in
 * `*` matches any rest of the path (`/prices/*` matches `/prices/` and `/prices/eur/today`,
 * not `/prices`); other paths match exactly. A rule without `method` matches every method,
 * and a `GET` rule also matches `HEAD`.
 */
export function pathMatches(pattern: string, path: string): boolean {
  if (pattern.endsWith("*")) return path.startsWith(pattern.slice(0, -1));
  return pattern === path;
}

export function matchRule(
  rules: readonly RouteRule[],
  method: string,
  path: string,
): RouteRule | null {
  const upper = method.toUpperCase();
  for (const rule of rules) {
    if (
      rule.method !== undefined &&
      rule.method !== upper &&
      !(rule.method === "GET" && upper === "HEAD")
    ) {
      continue;
    }
    if (pathMatches(rule.path, path)) return rule;
  }
  return null;
}
