import type { D1Migration } from "cloudflare:test";
import type { Bindings } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends Bindings {
      TEST_MIGRATIONS: D1Migration[];
      ADMIN_TOKEN: string;
      /** test/support/rpc-client.mjs: calls KeygateService over a service binding */
      RPC_CLIENT: Fetcher;
    }
  }
}
