import { createSpinner } from "nanospinner";
import pc from "picocolors";
import type { RateLimit } from "./api-types.js";
import { duration } from "../duration.js";

/** How the CLI writes: JSON for machines, aligned text for people, a spinner while it waits. */

/** One JSON document per line on stdout (`--json`); several for commands that stream. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Lines of text on stdout. */
export function print(...lines: string[]): void {
  for (const line of lines) process.stdout.write(`${line}\n`);
}

/** A note for people on stderr (kept out of piped output). */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** `value` as table text: `-` for nothing, JSON for objects. */
export function cell(value: unknown): string {
  if (value === null || value === undefined || value === "") return "-";
  if (Array.isArray(value)) return value.length === 0 ? "-" : value.map(cell).join(" ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Columns aligned with two spaces, headings in upper case. */
export function table(headings: string[], rows: unknown[][]): string[] {
  const text = rows.map((row) => row.map(cell));
  const widths = headings.map((heading, i) =>
    Math.max(heading.length, ...text.map((row) => (row[i] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [pc.bold(line(headings.map((h) => h.toUpperCase()))), ...text.map(line)];
}

/**
 * The one place a plaintext secret is written for people (an API key, a webhook secret): on
 * its own line of stdout, with the note that the API will not show it again on stderr.
 */
export function printSecret(secret: string, what = "the secret"): void {
  print("", `  ${pc.bold(secret)}`, "");
  note(pc.yellow(`This is the only time ${what} is shown: store it now.`));
}

/** A rate limit as table text, e.g. `100/1m`, `1000/1d`; null for none. */
export function rateLimitText(rateLimit: RateLimit | null): string | null {
  return rateLimit ? `${rateLimit.limit}/${duration(rateLimit.periodSeconds)}` : null;
}

/** `label  value` pairs, labels aligned. */
export function fields(pairs: [string, unknown][]): string[] {
  const width = Math.max(...pairs.map(([label]) => label.length));
  return pairs.map(([label, value]) => `${pc.dim(label.padEnd(width))}  ${cell(value)}`);
}

/** A share in [0, 1] as a bar of `width` cells. */
export function bar(share: number, width = 30): string {
  const clamped = Number.isFinite(share) ? Math.min(1, Math.max(0, share)) : 0;
  const filled = Math.round(clamped * width);
  return "█".repeat(filled) + "░".repeat(width - filled);
}

/** How long before `now` an ISO time was, roughly (`12s ago`, `3h ago`). */
export function ago(at: string | null | undefined, now = Date.now()): string {
  if (!at) return "never";
  return `${span(now - Date.parse(at))} ago`;
}

/** A duration in milliseconds, roughly, in its largest unit (`45s`, `3m`, `2h`, `6d`). */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s}s`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

export const mark = {
  ok: pc.green("✓"),
  fail: pc.red("✗"),
  warn: pc.yellow("!"),
  skip: pc.dim("-"),
};

export { pc as colors };

/** What waiting looks like: a spinner on a terminal, nothing otherwise. */
export interface Progress {
  update(text: string): void;
  succeed(text: string): void;
  fail(text: string): void;
  stop(): void;
}

const silent: Progress = { update() {}, succeed() {}, fail() {}, stop() {} };

/** Without a terminal, only the outcome is written, as a line on stderr. */
const plain: Progress = { update() {}, succeed: note, fail: note, stop() {} };

/**
 * A spinner on stderr when it is a terminal; otherwise only the outcome as a line
 * (`quiet`, for `--json`: not even that).
 */
export function progress(text: string, quiet: boolean): Progress {
  if (quiet) return silent;
  // a terminal that reports no width (some CI ptys) garbles the spinner's redraws
  if (!process.stderr.isTTY || !process.stderr.columns) return plain;
  const spinner = createSpinner(text, { stream: process.stderr }).start();
  let spinning = true;
  const end = (finish: () => void) => {
    if (!spinning) return;
    spinning = false;
    finish();
  };
  return {
    update: (next) => void (spinning && spinner.update({ text: next })),
    succeed: (done) => end(() => spinner.success({ text: done })),
    fail: (failed) => end(() => spinner.error({ text: failed })),
    stop: () => end(() => spinner.clear().stop()),
  };
}

/** Runs `work`; on a terminal, a spinner shows `text` if it takes longer than a blink. */
export async function during<T>(text: string, quiet: boolean, work: () => Promise<T>): Promise<T> {
  let shown: Progress | undefined;
  const timer = setTimeout(() => {
    if (!quiet && process.stderr.isTTY && process.stderr.columns) shown = progress(text, false);
  }, 150);
  try {
    return await work();
  } finally {
    clearTimeout(timer);
    shown?.stop();
  }
}
