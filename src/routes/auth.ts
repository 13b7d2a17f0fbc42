import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";
import { constantTimeEqual } from "../keys/hash";
import { grantsManagement, type ManagementPermission } from "../keys/scopes";
import { extractCredential } from "../edge/credentials";
import { verifySecret } from "../edge/verify";

/** Who is calling the management API. */
export type Principal =
  { kind: "admin" } | { kind: "key"; keyId: string; consumerId: string; scopes: string[] };

export type Permission = ManagementPermission;

/** The audit actor string of a principal: `admin` or `key:<keyId>`. */
export function actorOf(principal: Principal): string {
  return principal.kind === "admin" ? "admin" : `key:${principal.keyId}`;
}

function allows(principal: Principal, permission: Permission): boolean {
  return principal.kind === "admin" || grantsManagement(principal.scopes, permission);
}

/** `POST /verify`: a read despite its method (it changes nothing and needs `keygate:verify`). */
export function isVerifyRequest(method: string, path: string): boolean {
  return method === "POST" && path.endsWith("/v1/verify");
}

function permissionFor(method: string, path: string): Permission {
  if (isVerifyRequest(method, path)) return "verify";
  if (method === "GET" || method === "HEAD") return "read";
  return "admin";
}

/**
 * Management credentials: `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time),
 * or a Keygate key holding `keygate:admin` or `keygate:*` (`keygate:read` for GETs,
 * `keygate:verify` for `POST /verify`). A key's `*` grants no management permission. Keys are
 * checked strictly: a revoked admin key stops at once.
 */
export function managementAuth(): MiddlewareHandler<AppEnv> {
  return async function managementAuth(c, next) {
    const config = c.get("config");
    const credential = extractCredential(c.req.raw.headers);
    if (credential.kind === "none") throw new KeygateError("missing_credentials");
    if (credential.kind === "refused") throw new KeygateError(credential.code);
    let principal: Principal;
    if (config.adminToken !== null && constantTimeEqual(credential.value, config.adminToken)) {
      principal = { kind: "admin" };
    } else {
      const verdict = await verifySecret(c.env, config, credential.value, {
        strict: true,
        clientIp: c.req.header("cf-connecting-ip") ?? null,
      });
      if (!verdict.ok) throw new KeygateError(verdict.code);
      principal = {
        kind: "key",
        keyId: verdict.record.keyId,
        consumerId: verdict.record.consumerId,
        scopes: verdict.record.scopes,
      };
    }
    const permission = permissionFor(c.req.method, c.req.path);
    if (!allows(principal, permission)) {
      const needed = permission === "admin" ? "keygate:admin" : `keygate:${permission}`;
      throw new KeygateError("insufficient_scope", {
        detail: `This operation needs the scope ${needed}.`,
        headers: {
          "WWW-Authenticate": `Bearer realm="keygate", error="insufficient_scope", scope="${needed}"`,
        },
      });
    }
    c.set("principal", principal);
    await next();
  };
}
