/**
 * The part of `node:crypto` the Worker uses (workerd implements it natively under the
 * `nodejs_compat` flag). Declared here rather than through @types/node, whose Node globals
 * (Buffer, process, timers) would leak into the Worker's types.
 */
declare module "node:crypto" {
  interface Hash {
    update(data: string, encoding: "utf8"): Hash;
    digest(encoding: "hex"): string;
  }
  export function createHash(algorithm: "sha256"): Hash;
}
