// The daemon API's schemas for /secrets: each is the request validator and the OpenAPI entry; the wire
// type is SecretInfo in secrets.ts (shared with the guest agent, which has no TypeBox).
import { Type, type Static } from "@sinclair/typebox";
import { MAX_SECRET_BYTES, SECRET_NAME_PATTERN, type SecretInfo } from "./secrets.ts";

const SecretName = Type.String({ pattern: SECRET_NAME_PATTERN, description: 'a secret name (letters, digits, ".", "_" and "-", at most 128 characters)' });
const Permissions = Type.String({ maxLength: 8, description: 'octal file mode such as "0600"' });
const Id = Type.Integer({ minimum: 0, maximum: 4294967294 });
// No maxLength: an oversized secret is a 413 (the body limit, then the decoded size), not a schema error.
const Data = Type.String({ description: "the content, base64" });

export const SecretParams = Type.Object({ name: SecretName });

export const CreateSecretBodySchema = Type.Object(
  {
    name: SecretName,
    data: Data,
    permissions: Type.Optional(Permissions),
    uid: Type.Optional(Id),
    gid: Type.Optional(Id),
  },
  { additionalProperties: false },
);
export type CreateSecretBody = Static<typeof CreateSecretBodySchema>;

/** Every field optional. An empty `data` keeps the content: Slicer's Go SDK always sends the field. */
export const UpdateSecretBodySchema = Type.Object(
  {
    data: Type.Optional(Data),
    permissions: Type.Optional(Permissions),
    uid: Type.Optional(Id),
    gid: Type.Optional(Id),
  },
  { additionalProperties: false },
);
export type UpdateSecretBody = Static<typeof UpdateSecretBodySchema>;

export const SecretInfoSchema = Type.Object({
  name: Type.String(),
  size: Type.Integer(),
  permissions: Type.String(),
  uid: Type.Integer(),
  gid: Type.Integer(),
  modified_at: Type.String(),
  mod_time: Type.String(),
});

export const SecretDeletedSchema = Type.Object({ name: Type.String(), message: Type.String() });

/**
 * Secret bodies may carry up to MAX_SECRET_BYTES of data, base64 (4/3 larger, plus line breaks if the caller
 * wrapped it) inside JSON: the route's body limit.
 */
export const SECRET_BODY_LIMIT = Math.ceil((MAX_SECRET_BYTES * 4) / 3) + 256 * 1024;

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatches: Same<Static<typeof SecretInfoSchema>, SecretInfo> = true;
void schemaMatches;
