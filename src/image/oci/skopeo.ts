// Debian's skopeo turns every source (a `docker save` tarball, an OCI archive or layout, a registry) into one
// OCI image layout on disk, so the rest of the import reads one format. Credentials go to skopeo in an auth
// file (mode 0600) inside the work folder, never on its command line (where `ps` would show them); the
// signature policy is our own file, so a host's /etc/containers does not change what an import does.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../../protocol/errors.ts";
import { CommandError, requireProgram, run } from "../../util/run.ts";
import type { RegistryReference } from "./reference.ts";

export type ArchiveFormat = "docker-archive" | "oci-archive" | "oci-dir";

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface SkopeoSource {
  /** skopeo's "transport:details" spelling of the source. */
  transport: string;
  /** How the source is named in messages. */
  label: string;
  registry?: { reference: RegistryReference; auth?: RegistryAuth; insecure: boolean };
}

export function archiveSource(format: ArchiveFormat, path: string): SkopeoSource {
  const transport = format === "oci-dir" ? `oci:${path}` : `${format}:${path}`;
  return { transport, label: format === "docker-archive" ? "the docker save archive" : format === "oci-archive" ? "the OCI archive" : "the OCI layout" };
}

export function registrySource(reference: RegistryReference, options: { auth?: RegistryAuth; insecure: boolean }): SkopeoSource {
  return { transport: `docker://${reference.canonical}`, label: JSON.stringify(reference.canonical), registry: { reference, ...options } };
}

/** The tag skopeo gives the image inside our layout. */
export const LAYOUT_TAG = "corral";

/** Copies `source` into a new OCI layout at `layoutDir`; `work` holds skopeo's temporary files. */
export async function copyToLayout(source: SkopeoSource, layoutDir: string, work: string, signal?: AbortSignal): Promise<void> {
  const skopeo = requireProgram("skopeo", "skopeo");
  const policy = join(work, "policy.json");
  await writeFile(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }), { mode: 0o600 });
  const args = ["--policy", policy, "--tmpdir", work, "copy", "--quiet"];
  const registry = source.registry;
  if (registry) {
    // Plain HTTP (and unverified TLS) only when the caller said insecure, as Slicer's registry config has it.
    args.push(`--src-tls-verify=${registry.insecure ? "false" : "true"}`);
    if (registry.auth) {
      const authFile = join(work, "auth.json");
      const auth = Buffer.from(`${registry.auth.username}:${registry.auth.password}`).toString("base64");
      await writeFile(authFile, JSON.stringify({ auths: { [registry.reference.registry]: { auth } } }), { mode: 0o600 });
      args.push("--src-authfile", authFile);
    } else {
      args.push("--src-no-creds");
    }
  }
  args.push(source.transport, `oci:${layoutDir}:${LAYOUT_TAG}`);
  try {
    await run(skopeo, args, { env: { ...process.env, TMPDIR: work, REGISTRY_AUTH_FILE: join(work, "no-auth.json") }, signal });
  } catch (err) {
    throw explainSkopeo(source, err);
  }
}

/** skopeo's failures in the catalogue's terms: what was wrong with the source, never skopeo's whole stderr. */
export function explainSkopeo(source: SkopeoSource, err: unknown): CorralError {
  if (!(err instanceof CommandError)) return new CorralError("internal", `Cannot read ${source.label}`, { cause: err });
  const text = err.stderr.trim();
  const last = (text.split("\n").pop() ?? "").replace(/^time="[^"]*" level=\w+ msg="?/, "").replace(/"$/, "");
  const detail = last.length > 300 ? `${last.slice(0, 300)}…` : last;
  if (source.registry) {
    const ref = source.label;
    // First: a TLS mismatch says nothing about credentials or the image. Status codes only as whole words:
    // the message names the registry's address, and a port such as 40137 holds "401".
    if (/server gave HTTP response to HTTPS client|http: server gave|x509|certificate/i.test(text)) {
      return new CorralError(
        "registry_unreachable",
        `Cannot reach the registry of ${ref} over verified HTTPS: pass insecure (--insecure) for a plain-HTTP or self-signed registry (${detail})`,
        { cause: err },
      );
    }
    if (/unauthorized|authentication required|denied|(?<![\w:.])401(?![\w.])/i.test(text)) {
      return new CorralError("registry_auth_failed", `The registry refused access to ${ref}: check the username and password (${detail})`, { cause: err });
    }
    if (/manifest unknown|name unknown|not found|(?<![\w:.])404(?![\w.])/i.test(text)) {
      return new CorralError("image_reference_not_found", `The registry has no image ${ref}`, { cause: err });
    }
    if (/connection refused|no such host|i\/o timeout|dial tcp|network is unreachable|EOF/i.test(text)) {
      return new CorralError("registry_unreachable", `Cannot reach the registry of ${ref}: ${detail}`, { cause: err });
    }
    return new CorralError("registry_unreachable", `Cannot pull ${ref}: ${detail}`, { cause: err });
  }
  return new CorralError("invalid_image_archive", `Cannot read ${source.label}: ${detail || "skopeo failed"}`, { cause: err });
}
