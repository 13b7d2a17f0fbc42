#!/usr/bin/env node
// Reads vitest's JSON report and prints the plain closing line CI looks for.
import { existsSync, readFileSync } from "node:fs";

const path = process.argv[2] ?? ".vitest-report.json";
if (!existsSync(path)) {
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const report = JSON.parse(readFileSync(path, "utf8"));
const passed = report.numPassedTests ?? 0;
const failed = (report.numFailedTests ?? 0) + (report.numFailedTestSuites ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
if (skipped) console.log(`${skipped} skipped`);
// CI reads this exact shape as the last line: nothing may follow it
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
