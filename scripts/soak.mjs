#!/usr/bin/env node
// `npm run soak [-- --seconds <n> …]`: rotation correctness under churn (test/soak/main.ts;
// `npm run soak -- --help` lists the flags). Not part of `npm test`.
//
// Bundled and imported by scripts/run-bundled.mjs, as the benchmark is. The bundle also
// exports the server the soak starts, stops and restarts in a child process (server.ts), so
// it is passed its own URL.
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { bundle } from "./run-bundled.mjs";

process.env.WRANGLER_SEND_METRICS ??= "false";

// one bundle per run: two soaks started together must not rewrite each other's module
const bundleUrl = await bundle("test/soak/main.ts", "keygate-soak", `soak-${process.pid}.mjs`);
const { main } = await import(bundleUrl);
try {
  process.exitCode = await main(process.argv.slice(2), bundleUrl);
} finally {
  await rm(fileURLToPath(bundleUrl), { force: true });
}
// Never linger: the server is stopped by now, so anything still holding the event loop is a
// leak, not work.
setTimeout(() => process.exit(), 5_000).unref();
