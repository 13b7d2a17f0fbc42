// @ts-expect-error -- the Worker's own parser, bundled in by esbuild and type-checked with the Worker (tsconfig.json); NodeNext does not resolve its extensionless imports
import { configFor } from "../config";

/**
 * Checks vars the way the Worker will read them, with the Worker's own parser
 * (src/config.ts: pure, zod). Its signature is restated here because that file is checked
 * under the Worker's compiler settings, not the CLI's.
 */
const parseWorkerConfig = configFor as (env: object) => {
  routeRules: unknown[];
  originUrl: string | null;
  keyPrefix: string;
};

export type VarsVerdict =
  | { ok: true; routeRules: number; originUrl: string | null; keyPrefix: string }
  | { ok: false; problems: string[] };

export function checkWorkerVars(vars: Record<string, unknown>): VarsVerdict {
  try {
    const config = parseWorkerConfig({ ...vars });
    return {
      ok: true,
      routeRules: config.routeRules.length,
      originUrl: config.originUrl,
      keyPrefix: config.keyPrefix,
    };
  } catch (error) {
    const problems = (error as { problems?: unknown }).problems;
    return {
      ok: false,
      problems: Array.isArray(problems) ? problems.map(String) : [String(error)],
    };
  }
}
