/**
 * Scopes are `resource:action` strings (`prices:read`). On the granted side `resource:*`
 * grants every action of a resource and `*` grants everything; a required scope is always
 * concrete.
 */
export const SCOPE_PATTERN = /^(\*|[a-z0-9][a-z0-9_.-]{0,63}:(\*|[a-z0-9][a-z0-9_.-]{0,63}))$/;
export const REQUIRED_SCOPE_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}:[a-z0-9][a-z0-9_.-]{0,63}$/;

/** Whether `granted` covers the one scope `required`. */
export function grantsScope(granted: readonly string[], required: string): boolean {
  const colon = required.indexOf(":");
  const resource = colon === -1 ? null : required.slice(0, colon);
  const wildcard = resource === null ? null : `${resource}:*`;
  // Keygate's own scopes are granted by name only: a consumer key's `*` covers the API
  // behind Keygate, never Keygate itself (so `*` cannot mint a token claiming keygate:admin)
  const anyCovers = resource !== "keygate";
  for (const scope of granted) {
    if ((scope === "*" && anyCovers) || scope === required || scope === wildcard) return true;
  }
  return false;
}

/** The first of `required` that `granted` does not cover, or null when all are covered. */
export function missingScope(
  granted: readonly string[],
  required: readonly string[],
): string | null {
  for (const scope of required) if (!grantsScope(granted, scope)) return scope;
  return null;
}

/** What a management operation needs: `admin` for changes, `read` for GETs, `verify`. */
export type ManagementPermission = "admin" | "read" | "verify";

/**
 * Whether `granted` holds a management permission: `keygate:admin` (or `keygate:*`) grants
 * everything, `keygate:read` or `keygate:verify` their own operations. `grantsScope` never
 * lets `*` cover a `keygate:` scope, so management is always granted by name.
 */
export function grantsManagement(
  granted: readonly string[],
  permission: ManagementPermission,
): boolean {
  return (
    grantsScope(granted, "keygate:admin") ||
    (permission !== "admin" && grantsScope(granted, `keygate:${permission}`))
  );
}

/**
 * The scopes both lists grant, wildcards included: a token's `prices:read` survives a key
 * that now holds `prices:*`, and a token's `prices:*` narrows to the key's `prices:read`.
 */
export function intersectScopes(token: readonly string[], key: readonly string[]): string[] {
  const kept = new Set<string>();
  for (const scope of token) {
    if (grantsScope(key, scope)) kept.add(scope);
    else for (const held of key) if (grantsScope([scope], held)) kept.add(held);
  }
  return [...kept];
}
