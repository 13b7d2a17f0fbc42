// Fails when the folders of src/ import each other in a circle: the layering that
// ARCHITECTURE.md describes must stay true. A folder under src/ is one node, a file at the
// top of src/ is a node of its own. Type-only imports count too, except those of src/env.ts,
// which names every binding's class for the types and is imported by everything.
// `node scripts/check-layers.mjs --graph` prints who imports whom.
import fs from "node:fs";
import path from "node:path";

const SRC = path.resolve(import.meta.dirname, "../src");
const TYPE_HUB = "env.ts";
const importPattern =
  /(?:^|\n)\s*(?:import|export)(\s+type)?[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** @param {string} dir @returns {string[]} */
function sources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return /\.(ts|js)$/.test(entry.name) && !entry.name.endsWith(".d.ts") ? [full] : [];
  });
}

/** @param {string} file */
function nodeOf(file) {
  const parts = path.relative(SRC, file).split(path.sep);
  return parts.length === 1 ? file.slice(SRC.length + 1) : `${parts[0]}/`;
}

/** @param {string} from @param {string} specifier */
function resolve(from, specifier) {
  const base = path.resolve(path.dirname(from), specifier);
  const stem = base.replace(/\.js$/, "");
  for (const candidate of [
    base,
    `${stem}.ts`,
    `${base}.ts`,
    `${base}.js`,
    path.join(base, "index.ts"),
  ]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  throw new Error(`${path.relative(SRC, from)}: cannot resolve ${specifier}`);
}

/** node -> node -> the file-level imports that make the arrow */
/** @type {Map<string, Map<string, string[]>>} */
const graph = new Map();
for (const file of sources(SRC)) {
  const from = nodeOf(file);
  const text = fs.readFileSync(file, "utf8");
  for (const match of text.matchAll(importPattern)) {
    const specifier = match[2] ?? match[3] ?? "";
    if (!specifier.startsWith(".")) continue;
    const target = resolve(file, specifier);
    const to = nodeOf(target);
    if (to === from || (from === TYPE_HUB && match[1])) continue;
    const arrows = graph.get(from) ?? new Map();
    graph.set(from, arrows);
    const imports = arrows.get(to) ?? [];
    arrows.set(to, imports);
    imports.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
  }
}

// Tarjan's strongly connected components: any component of more than one node is a circle
/** @type {Map<string, number>} */
const index = new Map();
/** @type {Map<string, number>} */
const low = new Map();
/** @type {string[]} */
const stack = [];
const onStack = new Set();
/** @type {string[][]} */
const circles = [];
let counter = 0;
/** @param {string} node */
function visit(node) {
  index.set(node, counter);
  low.set(node, counter++);
  stack.push(node);
  onStack.add(node);
  for (const next of graph.get(node)?.keys() ?? []) {
    if (!index.has(next)) {
      visit(next);
      low.set(node, Math.min(low.get(node) ?? 0, low.get(next) ?? 0));
    } else if (onStack.has(next)) {
      low.set(node, Math.min(low.get(node) ?? 0, index.get(next) ?? 0));
    }
  }
  if (low.get(node) === index.get(node)) {
    const component = [];
    let member;
    do {
      member = stack.pop() ?? node;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1) circles.push(component);
  }
}
for (const node of graph.keys()) if (!index.has(node)) visit(node);

if (process.argv.includes("--graph")) {
  for (const [from, arrows] of [...graph].sort()) {
    console.log(`${from} -> ${[...arrows.keys()].sort().join(", ")}`);
  }
}
for (const circle of circles) {
  console.error(`src/ folders import each other in a circle: ${circle.sort().join(", ")}`);
  for (const from of circle) {
    for (const [to, imports] of graph.get(from) ?? []) {
      if (circle.includes(to)) for (const line of imports) console.error(`  ${line}`);
    }
  }
}
if (circles.length > 0) process.exit(1);
console.log(`src/ layering: ${graph.size} folders and files, no circles`);
