import type { KeyCoordinator } from "./coordinator/key-coordinator";
import type { TokenSigner } from "./tokens/token-signer";
import type { Config } from "./config";
import type { Principal } from "./routes/auth";

/** Bindings, vars and secrets, as operators name them in `wrangler.toml` (README). */
export interface Bindings {
  KEYS: KVNamespace;
  DB: D1Database;
  COORDINATOR: DurableObjectNamespace<KeyCoordinator>;
  SIGNER: DurableObjectNamespace<TokenSigner>;
  ORIGIN_URL?: string;
  KEY_PREFIX?: string;
  DEFAULT_GRACE_SECONDS?: string | number;
  MAX_GRACE_SECONDS?: string | number;
  ROUTE_RULES?: string | unknown[];
  CACHE_TTL_SECONDS?: string | number;
  ADMIN_TOKEN?: string;
  TOKEN_ISSUER?: string;
  TOKEN_AUDIENCE?: string;
  TOKEN_TTL_SECONDS?: string | number;
  MAX_TOKEN_TTL_SECONDS?: string | number;
  SIGNING_KEY_ROTATION_DAYS?: string | number;
  SIGNING_ALG?: string;
  MAX_KEY_AGE_DAYS?: string | number;
}

export interface Variables {
  requestId: string;
  config: Config;
  principal: Principal;
}

/** The one Hono environment type of the Worker. */
export interface AppEnv {
  Bindings: Bindings;
  Variables: Variables;
}
