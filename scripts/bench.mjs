#!/usr/bin/env node
// `npm run bench [-- --json --duration <s> --connections <n> --rounds <n>]`
//
// The benchmark is TypeScript (test/bench/, type-checked by tsconfig.node.json), bundled and
// imported by scripts/run-bundled.mjs.
import { bundle } from "./run-bundled.mjs";

process.env.WRANGLER_SEND_METRICS ??= "false";

const { main } = await import(await bundle("test/bench/main.ts", "keygate-bench", "bench.mjs"));
process.exitCode = await main(process.argv.slice(2));
// Never linger: the servers are stopped by now, so anything still holding the event loop is a
// leak, not work.
setTimeout(() => process.exit(), 5_000).unref();
