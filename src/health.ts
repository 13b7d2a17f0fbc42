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
}

/**
 * The configuration summary of `GET /_keygate/health`. It is public, so it holds no value an
 * attacker could use: not the origin URL (reaching the origin directly would bypass Keygate),
 * not the rules, and no digest of them either, which would let a guessed origin be confirmed
 * offline.
 */
export function configSummary(config: Config): ConfigSummary {
  return {
    origin: config.originUrl === null ? "echo" : "configured",
    routeRules: config.routeRules.length,
    cacheTtlSeconds: config.cacheTtlMs / 1000,
  };
}

/**
 * `GET /_keygate/health`, unauthenticated: the version and which configuration is running
 * (whether an origin is set, how many route rules, the cache TTL), or 503
 * with the configuration's problems.
 */
export function health(c: Context<AppEnv>): Response {
  let config: Config;
  try {
    config = configFor(c.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      return c.json({ status: "misconfigured", version: VERSION, problems: error.problems }, 503);
    }
    throw error;
  }
  return c.json({ status: "ok", version: VERSION, config: configSummary(config) });
}
