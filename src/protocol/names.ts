// Strict patterns for every name that becomes part of a host path or a process argument.
// The guest is the security boundary, but these names live on the host: nothing else gets through.
import { CorralError } from "./errors.ts";

/** A DNS label, lower case: VM hostnames. */
export const HOSTNAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/** Host group names: a hostname prefix, so short enough to leave room for "-N". */
export const HOSTGROUP_PATTERN = "^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$";
/** Image names: letters, digits, dot, dash, underscore; never "." or "..". */
export const IMAGE_PATTERN = "^[a-z0-9][a-z0-9._-]{0,62}$";
/** A login name in the guest, as useradd takes it by default. */
export const GUEST_USER_PATTERN = "^[a-z_][a-z0-9_-]{0,31}$";

const hostnameRe = new RegExp(HOSTNAME_PATTERN);
const hostgroupRe = new RegExp(HOSTGROUP_PATTERN);
const imageRe = new RegExp(IMAGE_PATTERN);

export function isHostname(name: string): boolean {
  return hostnameRe.test(name);
}

export function isHostgroupName(name: string): boolean {
  return hostgroupRe.test(name);
}

export function isImageName(name: string): boolean {
  return imageRe.test(name) && !name.includes("..");
}

export function assertHostname(name: string): string {
  if (!isHostname(name)) {
    throw new CorralError("invalid_name", `Invalid hostname ${JSON.stringify(name)}: use lower-case letters, digits and dashes (1-63 characters)`);
  }
  return name;
}

export function assertHostgroupName(name: string): string {
  if (!isHostgroupName(name)) {
    throw new CorralError("invalid_name", `Invalid host group name ${JSON.stringify(name)}: use a lower-case letter, then letters, digits and dashes (1-32 characters)`);
  }
  return name;
}

export function assertImageName(name: string): string {
  if (!isImageName(name)) {
    throw new CorralError("invalid_name", `Invalid image name ${JSON.stringify(name)}: use lower-case letters, digits, ".", "-" and "_" (1-63 characters)`);
  }
  return name;
}
