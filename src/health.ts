import type { Context } from "hono";
import { ConfigError, configFor, type Config } from "./config";
import type { AppEnv } from "./env";
import { VERSION } from "./version";

export const HEALTH_PATH = "/_keygate/health";

/** What health says of the running configuration: enough to tell two apart, nothing more. */
export interface ConfigSummary {
  /** `echo`: the built-in echo origin (ORIGIN_URL empty); `configured`: an ORIGIN_URL. */
  origin: "echo" | "configured";
  routeRules: number;
  cacheTtlSeconds: number;
  /** 16 hex digits of SHA-256 over the effective settings, secrets left out. */
  fingerprint: string;
}

const fingerprints = new WeakMap<Config, Promise<string>>();

/**
 * A short fingerprint of the effective configuration: equal for two deployments with the same
 * settings, different when any of them differs. The admin token is left out, so the digest
 * can never serve to guess it offline.
 */
function fingerprintOf(config: Config): Promise<string> {
  let fingerprint = fingerprints.get(config);
  if (fingerprint === undefined) {
    const { adminToken: _secret, routes: _derived, ...settings } = config;
    fingerprint = crypto.subtle
      .digest("SHA-256", new TextEncoder().encode(JSON.stringify(settings)))
      .then((digest) =>
        [...new Uint8Array(digest, 0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      );
    fingerprints.set(config, fingerprint);
  }
  return fingerprint;
}

/** The configuration summary of `GET /_keygate/health` (public: never the values themselves). */
export async function configSummary(config: Config): Promise<ConfigSummary> {
  return {
    origin: config.originUrl === null ? "echo" : "configured",
    routeRules: config.routeRules.length,
    cacheTtlSeconds: config.cacheTtlMs / 1000,
    fingerprint: await fingerprintOf(config),
  };
}

/**
 * `GET /_keygate/health`, unauthenticated: the version and which configuration is running
 * (whether an origin is set, how many route rules, the cache TTL and a fingerprint), or 503
 * with the configuration's problems.
 */
export async function health(c: Context<AppEnv>): Promise<Response> {
  let config: Config;
  try {
    config = configFor(c.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      return c.json({ status: "misconfigured", version: VERSION, problems: error.problems }, 503);
    }
    throw error;
  }
  return c.json({ status: "ok", version: VERSION, config: await configSummary(config) });
}
