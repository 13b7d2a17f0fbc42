import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** Route rules the workerd suites run with (tests needing others pass their own env). */
export const TEST_ROUTE_RULES = [
  { path: "/public/*", public: true },
  { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
  { method: "POST", path: "/trade/*", scopes: ["trade:write"], strict: true },
  { path: "/strict/*", strict: true },
];

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
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  ADMIN_TOKEN: "test-admin-token-0123456789",
                  ROUTE_RULES: JSON.stringify(TEST_ROUTE_RULES),
                  ORIGIN_URL: "",
                },
              },
            }),
          ],
          test: {
            name: "workers",
            include: ["test/**/*.test.ts"],
            exclude: ["test/e2e/**"],
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
