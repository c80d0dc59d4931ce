// `client.secrets`: secrets the daemon keeps and delivers into every VM as /run/corral/secrets/NAME.
// Values go out base64-encoded (as the API wants) and never come back.
import type { SecretInfo } from "../protocol/secrets.ts";
import type { Transport } from "./transport.ts";

export interface SecretFields {
  /** The secret's bytes (a string is taken as UTF-8). */
  data?: Buffer | Uint8Array | string;
  /** Octal file mode in the guest, e.g. "0600" (the default) or "0644". */
  permissions?: string;
  uid?: number;
  gid?: number;
}

function body(fields: SecretFields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (fields.data !== undefined) out.data = Buffer.from(fields.data).toString("base64");
  if (fields.permissions !== undefined) out.permissions = fields.permissions;
  if (fields.uid !== undefined) out.uid = fields.uid;
  if (fields.gid !== undefined) out.gid = fields.gid;
  return out;
}

export class SecretsApi {
  constructor(private readonly transport: Transport) {}

  list(): Promise<SecretInfo[]> {
    return this.transport.json("GET", "/secrets");
  }

  /** Fails with status 409 (`secret_exists`) when the name is taken. */
  create(name: string, fields: SecretFields & { data: Buffer | Uint8Array | string }): Promise<SecretInfo> {
    return this.transport.json("POST", "/secrets", { name, ...body(fields) });
  }

  /** Changes the data and/or the file's mode and owner; what is not given stays. */
  update(name: string, fields: SecretFields): Promise<SecretInfo> {
    return this.transport.json("PATCH", `/secrets/${encodeURIComponent(name)}`, body(fields));
  }

  remove(name: string): Promise<{ name: string; message: string }> {
    return this.transport.json("DELETE", `/secrets/${encodeURIComponent(name)}`);
  }
}
