import { WorkerEntrypoint } from "cloudflare:workers";
import { configFor } from "../config";
import { checkKey, type KeyCheck } from "../edge/check-key";
import type { Bindings } from "../env";
import { KeygateError } from "../errors";

/**
 * Keygate over a service binding, for Workers that verify without HTTP:
 *
 * ```toml
 * [[services]]
 * binding = "KEYGATE"
 * service = "keygate"
 * entrypoint = "KeygateService"
 * ```
 *
 * `await env.KEYGATE.verify(key, { scopes: ["prices:read"] })` answers what
 * `POST /_keygate/v1/verify` answers. A storage failure rejects with an error whose message
 * starts with `unavailable` (fail closed).
 */
export class KeygateService extends WorkerEntrypoint<Bindings> {
  async verify(key: string, options: { scopes?: string[] } = {}): Promise<KeyCheck> {
    if (typeof key !== "string" || key.length === 0 || key.length > 4096) {
      return {
        valid: false,
        code: "invalid_key",
        keyId: null,
        consumerId: null,
        version: null,
        scopes: [],
        expiresAt: null,
        graceUntil: null,
      };
    }
    const scopes = Array.isArray(options.scopes)
      ? options.scopes.filter((s): s is string => typeof s === "string")
      : [];
    try {
      return await checkKey(this.env, this.ctx, configFor(this.env), key, scopes);
    } catch (error) {
      if (error instanceof KeygateError)
        throw new Error(`${error.code}: ${error.message}`, { cause: error });
      throw error;
    }
  }
}
