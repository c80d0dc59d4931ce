// Turns TypeBox validation errors into sentences that name the offending path the way the user wrote it:
// `config.host_groups[1].vcpu must be an integer, got "two"`.
import type { TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError } from "@sinclair/typebox/value";
import { quote } from "../protocol/errors.ts";

/** "/config/host_groups/1/vcpu" -> "config.host_groups[1].vcpu" */
export function displayPath(pointer: string, root = ""): string {
  let out = root;
  for (const raw of pointer.split("/").slice(1)) {
    const part = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out.length > 0 ? `.${part}` : part;
  }
  return out || "(top level)";
}

function expectation(error: ValueError): string {
  const schema = error.schema as TSchema & Record<string, unknown>;
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return "is not a known setting";
    case ValueErrorType.ObjectRequiredProperty:
      return "is required";
    case ValueErrorType.Integer:
      return "must be an integer";
    case ValueErrorType.Number:
      return "must be a number";
    case ValueErrorType.String:
      return "must be a string";
    case ValueErrorType.Boolean:
      return "must be true or false";
    case ValueErrorType.Array:
      return "must be a list";
    case ValueErrorType.Object:
      return "must be a mapping";
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum:
      return `must be at least ${String(schema.minimum)}`;
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum:
      return `must be at most ${String(schema.maximum)}`;
    case ValueErrorType.StringPattern:
      return typeof schema.description === "string" ? `must be ${schema.description}` : `must match ${String(schema.pattern)}`;
    case ValueErrorType.StringMinLength:
      return "must not be empty";
    case ValueErrorType.StringMaxLength:
      return `must be at most ${String(schema.maxLength)} characters`;
    case ValueErrorType.Union: {
      const options = (schema.anyOf as TSchema[] | undefined)?.map((s) => (s as { const?: unknown }).const).filter((c) => c !== undefined);
      return options && options.length > 0 ? `must be one of ${options.map((o) => quote(o)).join(", ")}` : "has the wrong type";
    }
    default:
      return error.message.charAt(0).toLowerCase() + error.message.slice(1);
  }
}

/** Every problem with `value`, one sentence each; empty when it is valid. */
export function describeSchemaErrors(schema: TSchema, value: unknown, root = ""): string[] {
  const messages: string[] = [];
  const seen = new Set<string>();
  for (const error of Value.Errors(schema, value)) {
    // A union reports its own failure and each branch's; the union's sentence is the useful one.
    if (seen.has(error.path)) continue;
    seen.add(error.path);
    const got = error.type === ValueErrorType.ObjectRequiredProperty || error.type === ValueErrorType.ObjectAdditionalProperties ? "" : `, got ${quote(error.value)}`;
    messages.push(`${displayPath(error.path, root)} ${expectation(error)}${got}`);
  }
  return messages;
}
