import { env, SELF } from "cloudflare:test";

/** Helpers for driving the Worker as its users do: over `fetch`, with the admin token. */

export const ADMIN = { Authorization: `Bearer ${env.ADMIN_TOKEN}` };

export interface Json {
  [name: string]: unknown;
}

export async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = ADMIN,
): Promise<{ status: number; body: Json; headers: Headers }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] ??= "application/json";
  }
  const response = await SELF.fetch(`https://keygate.test${path}`, init);
  const text = await response.text();
  let parsed: Json;
  try {
    parsed = text ? (JSON.parse(text) as Json) : {};
  } catch {
    parsed = { text };
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** The `code` of a problem response's JSON body. */
export async function codeOf(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { code?: string }).code;
}

export const admin = {
  get: (path: string) => call("GET", `/_keygate/v1${path}`),
  post: (path: string, body: unknown = {}, headers: Record<string, string> = {}) =>
    call("POST", `/_keygate/v1${path}`, body, { ...ADMIN, ...headers }),
  patch: (path: string, body: unknown) => call("PATCH", `/_keygate/v1${path}`, body),
  delete: (path: string) => call("DELETE", `/_keygate/v1${path}`),
};

export async function newConsumer(name = "Acme"): Promise<string> {
  const created = await admin.post("/consumers", { name });
  if (created.status !== 201) throw new Error(`consumer: ${JSON.stringify(created.body)}`);
  return created.body.id as string;
}

export interface IssuedKey {
  id: string;
  key: string;
  consumerId: string;
  body: Json;
}

export async function newKey(
  scopes: string[] = ["prices:read"],
  extra: Record<string, unknown> = {},
  consumerId?: string,
): Promise<IssuedKey> {
  const consumer = consumerId ?? (await newConsumer());
  const created = await admin.post(`/consumers/${consumer}/keys`, { scopes, ...extra });
  if (created.status !== 201) throw new Error(`key: ${JSON.stringify(created.body)}`);
  return {
    id: created.body.id as string,
    key: created.body.key as string,
    consumerId: consumer,
    body: created.body,
  };
}

/** A front-door request with the secret in the given header. */
export function withKey(
  secret: string,
  path = "/anything",
  init: RequestInit = {},
): Promise<Response> {
  return SELF.fetch(`https://keygate.test${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${secret}`, ...(init.headers as Record<string, string>) },
  });
}
