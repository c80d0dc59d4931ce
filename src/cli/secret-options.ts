// Secrets the CLI is given (the controller's API key, a daemon's token) without the command line, where `ps`
// and /proc/PID/cmdline show them to every user of the machine: a file that only its owner may read
// (checked as ssh checks a private key), or an environment variable. The flag itself still works, with a
// warning.
import { readFileSync, statSync } from "node:fs";

export interface SecretSource {
  /** The value given on the command line (`--api-key KEY`). */
  value?: string;
  /** The file given instead (`--api-key-file FILE`). */
  file?: string;
  /** The environment variable's value, if that route has one. */
  env?: string;
  /** How the three are spelled, for messages: "--api-key", "--api-key-file", "CORRAL_API_KEY". */
  flag: string;
  fileFlag: string;
  envName?: string;
}

/** Reads a secret from a file no one but its owner can read or write; refuses a looser one, saying what to do. */
export function readSecretFile(file: string, flag: string): string {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    throw new Error(`Cannot read ${flag} ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, "0");
    throw new Error(`${flag} ${JSON.stringify(file)} is open to other users (mode ${octal}): run "chmod 600 ${file}" (only its owner may read a secret)`);
  }
  const value = readFileSync(file, "utf8").trim();
  if (value === "") throw new Error(`${flag} ${JSON.stringify(file)} is empty`);
  return value;
}

/**
 * The secret from whichever source was given: the flag, else the file, else the environment (giving both
 * the flag and the file is an error). `warn` is told once when the flag was used.
 */
export function resolveSecret(source: SecretSource, warn: (message: string) => void): string | undefined {
  if (source.value !== undefined && source.file !== undefined) throw new Error(`Give ${source.flag} or ${source.fileFlag}, not both`);
  if (source.file !== undefined) return readSecretFile(source.file, source.fileFlag);
  if (source.value !== undefined) {
    const instead = source.envName ? `${source.fileFlag} FILE or ${source.envName}` : `${source.fileFlag} FILE`;
    warn(`${source.flag} on the command line is visible to every user of this machine (ps): use ${instead} instead`);
    return source.value;
  }
  return source.env;
}

/** Writes a warning on stderr the way the CLI's other messages look. */
export function warnOnStderr(message: string): void {
  process.stderr.write(`corral: warning: ${message}\n`);
}
