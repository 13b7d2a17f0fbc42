import { readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { CliError } from "./errors.js";

/**
 * The parts of `wrangler.toml` that setup and doctor read, and the one edit setup makes
 * (the ids of the KV namespace and the D1 database), done on the text so comments and
 * layout survive.
 */

/** The ids the repository ships with: fine for local dev, replaced by `keygate setup --remote`. */
export const PLACEHOLDER_KV_ID = "00000000000000000000000000000000";
export const PLACEHOLDER_D1_ID = "00000000-0000-0000-0000-000000000000";

type Table = Record<string, unknown>;

export interface WranglerConfig {
  path: string;
  text: string;
  data: Table;
}

export function readWranglerConfig(path: string): WranglerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new CliError(`no ${path}`, {
      details: ["Run keygate in the Keygate project directory, or pass --config <path>."],
    });
  }
  return { path, text, data: parseToml(path, text) };
}

function parseToml(path: string, text: string): Table {
  try {
    return parse(text) as Table;
  } catch (error) {
    const message = error instanceof TomlError ? error.message.split("\n")[0] : String(error);
    throw new CliError(`${path} is not valid TOML: ${message}`);
  }
}

const tables = (value: unknown): Table[] =>
  Array.isArray(value) ? value.filter((v): v is Table => typeof v === "object" && v !== null) : [];

export function kvNamespace(config: WranglerConfig, binding: string): Table | undefined {
  return tables(config.data.kv_namespaces).find((t) => t.binding === binding);
}

export function d1Database(config: WranglerConfig, binding: string): Table | undefined {
  return tables(config.data.d1_databases).find((t) => t.binding === binding);
}

export function durableObject(config: WranglerConfig, name: string): Table | undefined {
  const section = config.data.durable_objects as Table | undefined;
  return tables(section?.bindings).find((t) => t.name === name);
}

/** Whether a `[[migrations]]` entry creates the Durable Object class. */
export function declaresClass(config: WranglerConfig, className: string): boolean {
  return tables(config.data.migrations).some((m) =>
    [m.new_sqlite_classes, m.new_classes].some(
      (list) => Array.isArray(list) && list.includes(className),
    ),
  );
}

/** `[vars]`, as wrangler hands them to the Worker. */
export function varsOf(config: WranglerConfig): Table {
  const vars = config.data.vars;
  return typeof vars === "object" && vars !== null ? (vars as Table) : {};
}

/**
 * `text` with `field = "value"` set in the `[[section]]` block whose `binding` is `binding`:
 * the field's line is replaced, or added after the binding line. Throws when no such block
 * exists in that form.
 */
export function withBindingField(
  text: string,
  section: "kv_namespaces" | "d1_databases",
  binding: string,
  field: string,
  value: string,
): string {
  const lines = text.split("\n");
  const header = new RegExp(`^\\s*\\[\\[\\s*${section}\\s*\\]\\]\\s*(#.*)?$`);
  const anyHeader = /^\s*\[/;
  const bindingLine = new RegExp(`^\\s*binding\\s*=\\s*["']${binding}["']\\s*(#.*)?$`);
  const fieldLine = new RegExp(`^(\\s*)${field}\\s*=`);
  for (let start = 0; start < lines.length; start++) {
    if (!header.test(lines[start]!)) continue;
    let end = start + 1;
    while (end < lines.length && !anyHeader.test(lines[end]!)) end++;
    const block = lines.slice(start + 1, end);
    const at = block.findIndex((line) => bindingLine.test(line));
    if (at === -1) continue;
    const entry = `${field} = "${value}"`;
    const existing = block.findIndex((line) => fieldLine.test(line));
    if (existing !== -1) {
      const indent = fieldLine.exec(block[existing]!)?.[1] ?? "";
      lines[start + 1 + existing] = indent + entry;
    } else {
      lines.splice(start + 1 + at + 1, 0, entry);
    }
    return lines.join("\n");
  }
  throw new CliError(`no [[${section}]] block with binding = "${binding}" to write ${field} into`);
}

/** Writes `field` of a binding and checks, by parsing the result, that it landed. */
export function setBindingField(
  config: WranglerConfig,
  section: "kv_namespaces" | "d1_databases",
  binding: string,
  field: string,
  value: string,
): WranglerConfig {
  const text = withBindingField(config.text, section, binding, field, value);
  const next = { path: config.path, text, data: parseToml(config.path, text) };
  const table = tables(next.data[section]).find((t) => t.binding === binding);
  if (table?.[field] !== value) {
    throw new CliError(
      `could not write ${field} of ${binding} into ${config.path}; set it by hand: ${value}`,
    );
  }
  return next;
}
