// Request validation with two Ajv instances: query strings and path parameters are text, so they are
// coerced ("true" -> true, one value -> a list); JSON bodies are taken exactly as sent ("2" is not a number,
// "x" is not a list), so a mistake in a body is reported instead of guessed at.
import { Ajv, type Options } from "ajv";
import type { FastifyInstance, FastifySchema } from "fastify";

// verbose: errors carry their schema, so messages can use its description instead of a raw pattern.
const common: Options = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false, verbose: true };

export function installValidators(app: FastifyInstance): void {
  const textParts = new Ajv({ ...common, coerceTypes: "array" });
  const bodies = new Ajv({ ...common, coerceTypes: false });
  app.setValidatorCompiler(({ schema, httpPart }: { schema: FastifySchema; httpPart?: string }) => (httpPart === "body" ? bodies : textParts).compile(schema as object));
}
