// Registry references ("127.0.0.1:5000/tools/alpine:3.19", "alpine", "docker://host/repo@sha256:…") checked
// and spelt out in full, as Docker spells them: a first component without "." or ":" (and not "localhost")
// is a Docker Hub repository. A reference is never an image name: the image gets its own, checked name.
import { CorralError } from "../../protocol/errors.ts";

export interface RegistryReference {
  /** "host[:port]", as the auth file keys it. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
  /** registry/repository[:tag][@digest] */
  canonical: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function parseReference(input: string): RegistryReference {
  const bad = (why: string): CorralError => new CorralError("invalid_reference", `Cannot pull ${JSON.stringify(input)}: ${why} (expected e.g. "127.0.0.1:5000/team/tool:1.0")`);
  if (input.length === 0 || input.length > 512 || /\s/.test(input)) throw bad("it is empty, too long or has spaces");
  let rest = input.startsWith("docker://") ? input.slice("docker://".length) : input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`the digest ${JSON.stringify(digest)} is not sha256:<64 hex digits>`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`the tag ${JSON.stringify(tag)} is not a valid tag`);
  }
  const parts = rest.split("/");
  let registry = "docker.io";
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))) {
    registry = first;
    parts.shift();
    if (!HOST.test(registry)) throw bad(`the registry ${JSON.stringify(registry)} is not a host name`);
  } else if (parts.length === 1) {
    parts.unshift("library");
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) throw bad('the repository must be lowercase components separated by "/"');
  const repository = parts.join("/");
  if (!tag && !digest) tag = "latest";
  const canonical = `${registry}/${repository}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
  return { registry, repository, tag, digest, canonical };
}
