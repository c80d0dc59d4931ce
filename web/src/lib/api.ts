// The controller's HTTP API as the dashboard calls it: the API key from session storage as a Bearer token,
// TTstack's envelope {"ok", "data"} (the TTstack routes': hosts, environments, VMs, images, status) unwrapped
// to its data, the error body {"error", "code"} (in the envelope or not) turned into ApiError, and a 401
// reported so the app can ask for the key.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface KeyStore {
  get(): string | undefined;
  set(key: string | undefined): void;
}

const KEY_ITEM = "corral-api-key";

/** The API key kept for this browser tab (session storage), so a reload does not ask again. */
export function sessionKeyStore(storage: Storage = window.sessionStorage): KeyStore {
  return {
    get: () => storage.getItem(KEY_ITEM) ?? undefined,
    set: (key) => (key === undefined ? storage.removeItem(KEY_ITEM) : storage.setItem(KEY_ITEM, key)),
  };
}

export interface ApiClient {
  get<T>(path: string): Promise<T>;
  text(path: string): Promise<string>;
  post<T>(path: string, body?: unknown): Promise<T>;
  delete<T>(path: string): Promise<T | undefined>;
  /** A ws:// or wss:// URL on this origin, with the key as ?token= (browsers cannot set headers on a WebSocket). */
  socketUrl(path: string): string;
}

export interface ApiOptions {
  keys: KeyStore;
  onUnauthorized: () => void;
  fetch?: typeof fetch;
  origin?: string;
}

export function createApiClient(options: ApiOptions): ApiClient {
  const doFetch = options.fetch ?? ((input, init) => window.fetch(input, init));
  const origin = options.origin ?? window.location.origin;

  async function request(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = {};
    const key = options.keys.get();
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await doFetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (cause) {
      throw new ApiError(0, "network", `Cannot reach the controller: ${cause instanceof Error ? cause.message : String(cause)}`);
    }
    if (response.ok) return response;
    if (response.status === 401) options.onUnauthorized();
    throw await errorOf(response);
  }

  return {
    async get<T>(path: string) {
      return unwrap(await (await request("GET", path)).json()) as T;
    },
    async text(path: string) {
      return (await request("GET", path)).text();
    },
    async post<T>(path: string, body?: unknown) {
      const response = await request("POST", path, body ?? {});
      return (response.status === 204 ? undefined : unwrap(await response.json())) as T;
    },
    async delete<T>(path: string) {
      const response = await request("DELETE", path);
      return response.status === 204 ? undefined : (unwrap(await response.json()) as T | undefined);
    },
    socketUrl(path: string) {
      const url = new URL(path, origin);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const key = options.keys.get();
      if (key) url.searchParams.set("token", key);
      return url.toString();
    },
  };
}

/**
 * TTstack's envelope's data (undefined for `{"ok": true}`); any other answer as it is. The envelope is told by
 * its shape: `ok` and at most `data` beside it, which no other answer of the controller has.
 */
export function unwrap(body: unknown): unknown {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return body;
  const keys = Object.keys(body);
  const envelope = (body as { ok?: unknown }).ok === true && keys.every((key) => key === "ok" || key === "data");
  return envelope ? (body as { data?: unknown }).data : body;
}

async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof body.error === "string") return new ApiError(response.status, typeof body.code === "string" ? body.code : "error", body.error);
  } catch {
    // Not the API's JSON error body (a proxy's page, say): show the status instead.
  }
  return new ApiError(response.status, "http_error", `The controller answered ${response.status} ${response.statusText}`.trim());
}
