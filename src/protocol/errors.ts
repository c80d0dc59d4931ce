// The one catalogue of error codes every Corral API answers with, and the one error class.
// Wire shape (Slicer's convention, used by every role): {"error": "message", "code": "snake_case_code"}.

export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_json: 400,
  invalid_name: 400,
  invalid_duration: 400,
  invalid_dockerfile: 400,
  resources_exceeded: 400,
  unsupported_engine: 400,
  // An image archive or layout that cannot be imported: not a tar, cut short, a missing blob, a digest that
  // does not match, a layer that is not a tar or would write outside the root.
  invalid_image_archive: 400,
  invalid_reference: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  file_not_found: 404,
  hostgroup_not_found: 404,
  vm_not_found: 404,
  image_not_found: 404,
  image_reference_not_found: 404,
  exec_not_found: 404,
  secret_not_found: 404,
  commit_not_found: 404,
  host_not_found: 404,
  env_not_found: 404,
  method_not_allowed: 405,
  timeout: 408,
  request_timeout: 408,
  conflict: 409,
  file_exists: 409,
  directory_not_empty: 409,
  vm_not_running: 409,
  vm_paused: 409,
  secret_exists: 409,
  image_in_use: 409,
  // A static address (`ip`) another VM holds.
  address_in_use: 409,
  // A registry refused the credentials given (or wants some): not this API's own 401.
  registry_auth_failed: 403,
  gone: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  no_capacity: 422,
  // A Dockerfile step failed in the builder VM (a RUN's non-zero exit, a COPY source that is not there).
  build_failed: 422,
  upgrade_required: 426,
  headers_too_large: 431,
  // nginx's convention: the client left before it was answered (the answer is for logs and metrics only).
  client_closed_request: 499,
  hostgroup_full: 429,
  insufficient_memory: 429,
  host_unreachable: 502,
  // The host answered, but with something the controller cannot use: not JSON, not TTstack's envelope, data
  // of another shape, a 5xx.
  host_bad_answer: 502,
  // A registry that cannot be reached, or only over plain HTTP without `insecure`.
  registry_unreachable: 502,
  agent_unavailable: 503,
  // The host group's network (bridge or isolated) could not be set up: the message says what is missing.
  network_unavailable: 503,
  unavailable: 503,
  insufficient_storage: 507,
  engine_failed: 500,
  // What a kind of host cannot do (a TTstack agent has no reboot, stats, shell or serial log).
  unsupported_by_host: 422,
  internal: 500,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: string;
  code: string;
}

export class CorralError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds after which the same request may succeed (sent as `Retry-After`): limits that free up. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; status?: number; retryAfterSeconds?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CorralError";
    this.code = code;
    this.status = options.status ?? ERROR_STATUS[code];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toBody(): ErrorBody {
    return { error: this.message, code: this.code };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_STATUS, value);
}

/** Formats a value for an error message: strings quoted, everything else as JSON. */
export function quote(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "nothing";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
