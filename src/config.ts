import { z } from "zod";
import type { Bindings } from "./env";
import { PREFIX_PATTERN } from "./keys/key-format";
import {
  compileRules,
  RouteRuleSchema,
  type CompiledRule,
  type RouteRule,
} from "./rules/route-rules";

const DAY = 86_400;

const seconds = (fallback: number, min: number) =>
  z.preprocess(
    (v) => (v === undefined || v === "" ? fallback : typeof v === "string" ? Number(v) : v),
    z
      .number()
      .int()
      .min(min)
      .max(10 * 365 * DAY),
  );

const VarsSchema = z.object({
  ORIGIN_URL: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z.url({ protocol: /^https?$/ }).optional(),
  ),
  KEY_PREFIX: z.preprocess(
    (v) => (v === undefined || v === "" ? "kg" : v),
    z.string().regex(PREFIX_PATTERN),
  ),
  DEFAULT_GRACE_SECONDS: seconds(7 * DAY, 0),
  MAX_GRACE_SECONDS: seconds(90 * DAY, 0),
  CACHE_TTL_SECONDS: seconds(10, 0),
  ROUTE_RULES: z.preprocess(
    (v) => (v === undefined || v === "" ? [] : typeof v === "string" ? JSON.parse(v) : v),
    z.array(RouteRuleSchema).max(256),
  ),
  ADMIN_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16).optional()),
  TOKEN_ISSUER: z.preprocess(
    (v) => (v === undefined || v === "" ? "keygate" : v),
    z.string().max(256),
  ),
  TOKEN_AUDIENCE: z.preprocess(
    (v) => (v === undefined || v === "" ? "keygate" : v),
    z.string().max(256),
  ),
  TOKEN_TTL_SECONDS: seconds(600, 10),
  MAX_TOKEN_TTL_SECONDS: seconds(3600, 10),
  SIGNING_KEY_ROTATION_DAYS: z.preprocess(
    (v) => (v === undefined || v === "" ? 30 : typeof v === "string" ? Number(v) : v),
    z.number().int().min(1).max(3650),
  ),
  SIGNING_ALG: z.preprocess(
    (v) => (v === undefined || v === "" ? "ES256" : v),
    z.enum(["ES256", "EdDSA"]),
  ),
  MAX_KEY_AGE_DAYS: z.preprocess(
    (v) => (v === undefined || v === "" ? undefined : typeof v === "string" ? Number(v) : v),
    z.number().int().min(1).max(3650).optional(),
  ),
});

/** Typed, defaulted view of the Worker's vars and secrets, parsed once per isolate. */
export interface Config {
  originUrl: string | null;
  keyPrefix: string;
  defaultGraceSeconds: number;
  maxGraceSeconds: number;
  cacheTtlMs: number;
  routeRules: RouteRule[];
  /** the rules as the front door matches them */
  routes: CompiledRule[];
  adminToken: string | null;
  tokens: {
    issuer: string;
    audience: string;
    ttlSeconds: number;
    maxTtlSeconds: number;
    rotationDays: number;
    algorithm: "ES256" | "EdDSA";
  };
  /** scheduled maintenance flags current versions older than this (`key.rotation_due`); null: off */
  maxKeyAgeDays: number | null;
}

/** Thrown when the vars cannot be parsed; every request then fails closed with 503. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid Keygate configuration: ${problems.join("; ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

const parsed = new WeakMap<object, Config | ConfigError>();

function parse(env: Bindings): Config | ConfigError {
  let result;
  try {
    result = VarsSchema.safeParse(env);
  } catch (error) {
    return new ConfigError([`ROUTE_RULES is not JSON: ${(error as Error).message}`]);
  }
  if (!result.success) {
    return new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`),
    );
  }
  const vars = result.data;
  if (vars.DEFAULT_GRACE_SECONDS > vars.MAX_GRACE_SECONDS) {
    return new ConfigError(["DEFAULT_GRACE_SECONDS exceeds MAX_GRACE_SECONDS"]);
  }
  if (vars.TOKEN_TTL_SECONDS > vars.MAX_TOKEN_TTL_SECONDS) {
    return new ConfigError(["TOKEN_TTL_SECONDS exceeds MAX_TOKEN_TTL_SECONDS"]);
  }
  return {
    originUrl: vars.ORIGIN_URL ?? null,
    keyPrefix: vars.KEY_PREFIX,
    defaultGraceSeconds: vars.DEFAULT_GRACE_SECONDS,
    maxGraceSeconds: vars.MAX_GRACE_SECONDS,
    cacheTtlMs: vars.CACHE_TTL_SECONDS * 1000,
    routeRules: vars.ROUTE_RULES,
    routes: compileRules(vars.ROUTE_RULES),
    adminToken: vars.ADMIN_TOKEN ?? null,
    tokens: {
      issuer: vars.TOKEN_ISSUER,
      audience: vars.TOKEN_AUDIENCE,
      ttlSeconds: vars.TOKEN_TTL_SECONDS,
      maxTtlSeconds: vars.MAX_TOKEN_TTL_SECONDS,
      rotationDays: vars.SIGNING_KEY_ROTATION_DAYS,
      algorithm: vars.SIGNING_ALG,
    },
    maxKeyAgeDays: vars.MAX_KEY_AGE_DAYS ?? null,
  };
}

/** The parsed configuration for `env`; throws `ConfigError` when it is invalid. */
export function configFor(env: Bindings): Config {
  let config = parsed.get(env);
  if (config === undefined) {
    config = parse(env);
    parsed.set(env, config);
  }
  if (config instanceof ConfigError) throw config;
  return config;
}
