// GET /api/envs without `limit`: every environment, as TTstack's `tt env list` reads it. At 10,000
// environments reading and serializing them in one go held the controller's event loop for 140-800 ms
// (heartbeats, creates and every other request waited); here the list is read a page at a time by the same
// keyset the paged API uses, each page serialized and written as it comes, with a turn of the loop given
// back between pages. What the client receives is one JSON document, `{"ok":true,"data":[…]}`.
//
// Like TTstack's own listing it is not a snapshot: an environment created or deleted while the list is being
// read may or may not be in it; one that exists throughout is in it exactly once (the keyset moves forward
// only).
import { setImmediate as nextTurn } from "node:timers/promises";
import type { EnvPosition, EnvRecord } from "./db/index.ts";
import { envView } from "./env-views.ts";

/** Environments per read: small enough that one page's read and serialization is a short task. */
export const WHOLE_LIST_PAGE = 250;

export type EnvPageReader = (limit: number, after: EnvPosition | undefined) => Promise<{ envs: EnvRecord[]; next: EnvPosition | undefined }>;

/** The whole list's JSON, in chunks of one page each. */
export async function* wholeEnvListJson(readPage: EnvPageReader, pageSize = WHOLE_LIST_PAGE): AsyncGenerator<string> {
  yield '{"ok":true,"data":[';
  let after: EnvPosition | undefined;
  let first = true;
  do {
    const page = await readPage(pageSize, after);
    if (page.envs.length > 0) {
      const items = page.envs.map((env) => JSON.stringify(envView(env))).join(",");
      yield first ? items : `,${items}`;
      first = false;
    }
    after = page.next;
    if (after !== undefined) await nextTurn();
  } while (after !== undefined);
  yield "]}";
}
