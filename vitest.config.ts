import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** Route rules the workerd suites run with (tests needing others pass their own env). */
export const TEST_ROUTE_RULES = [
  { path: "/public/*", public: true },
  { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
  { method: "POST", path: "/trade/*", scopes: ["trade:write"], strict: true },
  { path: "/strict/*", strict: true },
];

/** Bindings every workerd project runs with. */
function testBindings(migrations: Awaited<ReturnType<typeof readD1Migrations>>) {
  return {
    TEST_MIGRATIONS: migrations,
    ADMIN_TOKEN: "test-admin-token-0123456789",
    ROUTE_RULES: JSON.stringify(TEST_ROUTE_RULES),
    ORIGIN_URL: "",
  };
}

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  return {
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: testBindings(migrations),
                // test/rpc: another Worker that calls KeygateService over a service binding.
                // The plugin renames the Worker under test to `vitest-plugin-runner-<project>`
                // (getRunnerName in @cloudflare/vitest-plugin's pool) and rewrites only its own
                // self-bindings, not those of auxiliary Workers, so the binding names the
                // runner; KeygateService is exported by it because the plugin re-exports every
                // WorkerEntrypoint it finds in wrangler.toml's main.
                serviceBindings: { RPC_CLIENT: "rpc-client" },
                workers: [
                  {
                    name: "rpc-client",
                    modules: true,
                    scriptPath: "./test/support/rpc-client.mjs",
                    compatibilityDate: "2026-04-20",
                    serviceBindings: {
                      KEYGATE: {
                        name: "vitest-plugin-runner-workers",
                        entrypoint: "KeygateService",
                      },
                    },
                  },
                ],
              },
            }),
          ],
          test: {
            name: "workers",
            include: ["test/**/*.test.ts"],
            exclude: ["test/e2e/**", "test/webhooks/**"],
            setupFiles: ["./test/setup.ts"],
          },
        },
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: testBindings(migrations),
                // every outbound fetch of this project (webhook deliveries, and the tests' own
                // reads of what was received) goes to test/webhooks/receiver.mjs
                outboundService: "webhook-receiver",
                workers: [
                  {
                    name: "webhook-receiver",
                    modules: true,
                    scriptPath: "./test/webhooks/receiver.mjs",
                    compatibilityDate: "2026-04-20",
                  },
                ],
              },
            }),
          ],
          test: {
            name: "webhooks",
            include: ["test/webhooks/**/*.test.ts"],
            setupFiles: ["./test/setup.ts"],
          },
        },
        {
          test: {
            name: "e2e",
            include: ["test/e2e/**/*.test.ts"],
            environment: "node",
            testTimeout: 60_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});
