import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { describeManagementSecurity, MANAGEMENT_ROUTES } from "../support/security";

const PREFIX = "/_keygate/v1";
/** Management operations that authenticate otherwise: the key being exchanged is the credential. */
const OWN_CREDENTIAL = ["POST /token"];

/** `METHOD /path` with every path parameter written `{}`, so names need not match. */
function operation(method: string, path: string): string {
  return `${method.toUpperCase()} ${path.replace(/\{[^}]+\}/g, "{}")}`;
}

async function documentedOperations(): Promise<string[]> {
  const res = await SELF.fetch("https://keygate.test/_keygate/openapi.json");
  const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
  const methods = ["get", "post", "put", "patch", "delete"];
  return Object.entries(doc.paths)
    .filter(([path]) => path.startsWith(`${PREFIX}/`))
    .flatMap(([path, item]) =>
      Object.keys(item)
        .filter((method) => methods.includes(method))
        .map((method) => operation(method, path.slice(PREFIX.length))),
    );
}

describe("management API security (every route)", () => {
  it("covers every management operation of the OpenAPI document but POST /token", async () => {
    const documented = await documentedOperations();
    const covered = MANAGEMENT_ROUTES.map((r) => operation(r.method, r.path));
    expect(documented.length).toBeGreaterThan(0);
    expect(documented).toEqual(expect.arrayContaining(OWN_CREDENTIAL));
    expect(documented.filter((op) => !OWN_CREDENTIAL.includes(op)).sort()).toEqual(
      [...new Set(covered)].sort(),
    );
    expect(new Set(covered).size).toBe(covered.length);
  });

  describeManagementSecurity();
});
