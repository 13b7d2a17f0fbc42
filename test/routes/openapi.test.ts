import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../src/errors";

const PREFIX = "/_keygate/v1";

/**
 * Every operation of the management API (and `POST /token`), as the document writes paths.
 * `GET /_keygate/health` is served outside the management API and is not documented here.
 */
const API_OPERATIONS = [
  "POST /consumers",
  "GET /consumers",
  "GET /consumers/{id}",
  "PATCH /consumers/{id}",
  "DELETE /consumers/{id}",
  "POST /consumers/{id}/keys",
  "GET /consumers/{id}/keys",
  "GET /keys/{id}",
  "PATCH /keys/{id}",
  "POST /keys/{id}/rotate",
  "GET /rotations/{id}",
  "GET /keys/{id}/rotations",
  "POST /rotations/{id}/complete",
  "POST /rotations/{id}/rollback",
  "POST /rotations/{id}/extend",
  "POST /keys/{id}/revoke",
  "POST /verify",
  "GET /audit",
  "GET /keys/{id}/usage",
  "POST /token",
];

interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
}

interface Operation {
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, unknown>;
}

interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

async function openapi(): Promise<Document> {
  const res = await SELF.fetch("https://keygate.test/_keygate/openapi.json");
  expect(res.status).toBe(200);
  return (await res.json()) as Document;
}

function operations(doc: Document): { name: string; operation: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({
      name: `${method.toUpperCase()} ${path.slice(PREFIX.length)}`,
      operation,
    })),
  );
}

/** Where in `schema` (refs followed) an object lists properties but lets others in. */
function openObjects(
  doc: Document,
  schema: Schema,
  at: string,
  seen = new Set<string>(),
): string[] {
  if (schema.$ref) {
    if (seen.has(schema.$ref)) return [];
    seen.add(schema.$ref);
    const name = schema.$ref.replace("#/components/schemas/", "");
    return openObjects(doc, doc.components.schemas[name]!, name, seen);
  }
  const open = schema.properties && schema.additionalProperties !== false ? [at] : [];
  const nested = [
    ...Object.entries(schema.properties ?? {}).map(([name, s]) => [`${at}.${name}`, s] as const),
    ...(schema.items ? [[`${at}[]`, schema.items] as const] : []),
    ...[...(schema.anyOf ?? []), ...(schema.oneOf ?? []), ...(schema.allOf ?? [])].map(
      (s) => [at, s] as const,
    ),
  ];
  return [...open, ...nested.flatMap(([where, s]) => openObjects(doc, s, where, seen))];
}

describe("the OpenAPI document", () => {
  it("is OpenAPI 3.1 and documents every operation of the management API", async () => {
    const doc = await openapi();
    expect(doc.openapi).toBe("3.1.0");
    const documented = operations(doc).map((o) => o.name);
    for (const operation of API_OPERATIONS) expect(documented).toContain(operation);
  });

  it("refuses unknown fields in every request body (additionalProperties: false)", async () => {
    const doc = await openapi();
    const withBody = operations(doc).filter((o) => o.operation.requestBody);
    expect(withBody.length).toBeGreaterThanOrEqual(10);
    for (const { name, operation } of withBody) {
      const content = operation.requestBody!.content;
      expect(Object.keys(content), name).toEqual(["application/json"]);
      expect(openObjects(doc, content["application/json"]!.schema, name), name).toEqual([]);
    }
  });

  it("documents a success and the problem responses of every operation", async () => {
    for (const { name, operation } of operations(await openapi())) {
      const statuses = Object.keys(operation.responses);
      expect(
        statuses.some((s) => s.startsWith("2")),
        name,
      ).toBe(true);
      expect(statuses, name).toEqual(expect.arrayContaining(["400", "401"]));
    }
  });

  it("lists every problem code, the front door's included, and the Keygate-Error header", async () => {
    const doc = await openapi();
    const code = doc.components.schemas.Problem!.properties!.code as Schema & { enum?: string[] };
    expect(code.enum).toEqual(Object.keys(ERROR_STATUS));
    expect(code.enum).toEqual(
      expect.arrayContaining(["invalid_path", "credential_in_url", "malformed_request"]),
    );
    const consumers = doc.paths[`${PREFIX}/consumers`]!.post!.responses["400"] as {
      headers?: Record<string, unknown>;
    };
    expect(Object.keys(consumers.headers ?? {})).toContain("Keygate-Error");
  });
});
