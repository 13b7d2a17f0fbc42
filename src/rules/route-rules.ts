import { z } from "zod";
import { REQUIRED_SCOPE_PATTERN } from "../keys/scopes";
import { canonicalPath, loosePath } from "./canonical-path";

/**
 * One entry of `ROUTE_RULES` (docs/front-door.md, "Route rules"). Its path is kept in canonical form (the
 * form request paths are matched in), and a rule is either public or demands something.
 */
export const RouteRuleSchema = z
  .strictObject({
    method: z
      .string()
      .regex(/^[A-Za-z]+$/)
      .transform((m) => m.toUpperCase())
      .optional(),
    path: z
      .string()
      .startsWith("/")
      .max(1024)
      .transform((path, ctx) => {
        const star = path.endsWith("*");
        const canonical = canonicalPath(star ? path.slice(0, -1) : path);
        if (canonical === null) {
          ctx.addIssue({ code: "custom", message: `path ${path} has a spelling that is refused` });
          return z.NEVER;
        }
        return star ? canonical + "*" : canonical;
      }),
    scopes: z.array(z.string().regex(REQUIRED_SCOPE_PATTERN)).max(32).optional(),
    public: z.boolean().optional(),
    strict: z.boolean().optional(),
    deny: z.boolean().optional(),
  })
  .refine((rule) => !(rule.public && (rule.scopes?.length || rule.strict || rule.deny)), {
    message: "a public rule cannot also demand scopes, strict or deny",
  });
export type RouteRule = z.output<typeof RouteRuleSchema>;

/**
 * `ROUTE_RULES` matching on the canonical path: the first rule whose method and path match
 * wins. A rule without `method` matches every method, and a `GET` rule also matches `HEAD`.
 *
 * When in doubt a rule demands more. A rule that demands something (scopes, `strict`, `deny`,
 * or just a key) matches case-insensitively, ignoring a trailing slash and trailing blanks, and
 * its `/prefix/*` also matches `/prefix` itself: an origin that routes loosely (Express does by
 * default) is never reached around it. A `public` rule matches only the exact spelling:
 * `/public/*` matches `/public/` and `/public/x`, not `/PUBLIC/x` or `/public`.
 */
export interface CompiledRule {
  rule: RouteRule;
  /** the path (before a trailing `*`) as the rule compares it: exact or loose */
  base: string;
  /** the path ended in `*` */
  prefix: boolean;
}

/** Compiles rules whose paths are already canonical (config parsing canonicalises them). */
export function compileRules(rules: readonly RouteRule[]): CompiledRule[] {
  return rules.map((rule) => {
    const prefix = rule.path.endsWith("*");
    const path = prefix ? rule.path.slice(0, -1) : rule.path;
    if (rule.public) return { rule, base: path, prefix };
    // `/prices/*` compares as the segment prefix `/prices`; `/*` as everything
    const base =
      prefix && path.endsWith("/") ? loosePath(path).replace(/\/$/, "") : loosePath(path);
    return { rule, base, prefix };
  });
}

function matchesExactly(compiled: CompiledRule, path: string): boolean {
  return compiled.prefix ? path.startsWith(compiled.base) : path === compiled.base;
}

function matchesLoosely(compiled: CompiledRule, loose: string): boolean {
  const { base } = compiled;
  if (!compiled.prefix) return loose === base;
  if (!compiled.rule.path.endsWith("/*")) return loose.startsWith(base);
  return loose === base || loose.startsWith(base + "/");
}

/** The first rule that `method` and the canonical `path` meet, or null. */
export function matchRule(
  rules: readonly CompiledRule[],
  method: string,
  path: string,
): RouteRule | null {
  let loose: string | null = null;
  for (const compiled of rules) {
    const ruleMethod = compiled.rule.method;
    if (ruleMethod !== undefined && ruleMethod !== method) {
      if (!(ruleMethod === "GET" && method === "HEAD")) continue;
    }
    if (compiled.rule.public) {
      if (matchesExactly(compiled, path)) return compiled.rule;
      continue;
    }
    loose ??= loosePath(path);
    if (matchesLoosely(compiled, loose)) return compiled.rule;
  }
  return null;
}
