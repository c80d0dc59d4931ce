// Secrets: GET /secrets (never the data), POST /secrets (201; 409 when the name is taken),
// PATCH /secrets/NAME, DELETE /secrets/NAME. Bodies may be a few MiB (the route's own limit).
import { Type } from "@sinclair/typebox";
import {
  CreateSecretBodySchema,
  SECRET_BODY_LIMIT,
  SecretDeletedSchema,
  SecretInfoSchema,
  SecretParams,
  UpdateSecretBodySchema,
  type UpdateSecretBody,
} from "../../protocol/secrets-api.ts";
import { DEFAULT_SECRET_PERMISSIONS, assertSecretName, checkSecretData, parsePermissions } from "../../protocol/secrets.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import type { SecretChange } from "../secrets/index.ts";

function decode(base64: string): Buffer {
  return Buffer.from(checkSecretData(base64), "base64");
}

/** A PATCH body as a change. An empty `data` keeps the content (Slicer's Go SDK always sends the field). */
export function secretChange(body: UpdateSecretBody): SecretChange {
  const change: SecretChange = {};
  if (body.data) change.data = decode(body.data);
  if (body.permissions !== undefined) change.permissions = parsePermissions(body.permissions);
  if (body.uid !== undefined) change.uid = body.uid;
  if (body.gid !== undefined) change.gid = body.gid;
  return change;
}

export function secretRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { secrets } = ctx;

  app.get("/secrets", { schema: { response: { 200: Type.Array(SecretInfoSchema) } } }, async () => secrets.list());

  app.post("/secrets", { bodyLimit: SECRET_BODY_LIMIT, schema: { body: CreateSecretBodySchema, response: { 201: SecretInfoSchema } } }, async (request, reply) => {
    const body = request.body;
    const name = assertSecretName(body.name);
    const fields = {
      permissions: parsePermissions(body.permissions ?? DEFAULT_SECRET_PERMISSIONS),
      uid: body.uid ?? 0,
      gid: body.gid ?? 0,
      data: decode(body.data),
    };
    const created = await secrets.create(name, fields);
    return reply.code(201).send(created);
  });

  app.patch(
    "/secrets/:name",
    { bodyLimit: SECRET_BODY_LIMIT, schema: { params: SecretParams, body: UpdateSecretBodySchema, response: { 200: SecretInfoSchema } } },
    async (request) => secrets.update(assertSecretName(request.params.name), secretChange(request.body)),
  );

  app.delete("/secrets/:name", { schema: { params: SecretParams, response: { 200: SecretDeletedSchema } } }, async (request) => {
    const name = assertSecretName(request.params.name);
    await secrets.remove(name);
    return { name, message: "Secret deleted" };
  });
}
