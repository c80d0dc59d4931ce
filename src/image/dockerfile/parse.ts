// Dockerfile syntax, the common subset Corral builds: parser directives, comments, line continuations, JSON
// and shell forms, and the instructions a single-stage build needs. Pure: text in, typed instructions out,
// every refusal naming the line. Variables are expanded later, step by step (see plan.ts), as Docker does.
import { CorralError } from "../../protocol/errors.ts";

/** RUN/CMD/ENTRYPOINT as written: the JSON (exec) form or a shell command line. */
export type CommandForm = { form: "exec"; argv: string[] } | { form: "shell"; text: string };

interface At {
  /** The line the instruction starts on (1-based). */
  line: number;
  /** The instruction as written, continuations joined (for progress and errors). */
  source: string;
}

export type Instruction = At &
  (
    | { kind: "FROM"; args: string; alias?: string }
    | { kind: "ARG"; args: string }
    | { kind: "ENV" | "LABEL"; args: string }
    | { kind: "RUN" | "CMD" | "ENTRYPOINT"; command: CommandForm }
    | { kind: "SHELL"; argv: string[] }
    | { kind: "COPY" | "ADD"; words: string[]; json: boolean; chown?: string; chmod?: string }
    | { kind: "WORKDIR" | "USER" | "EXPOSE" | "MAINTAINER"; args: string }
  );

export interface Dockerfile {
  /** The escape character (`\` unless the `escape` directive says "`"). */
  escape: string;
  instructions: Instruction[];
}

const UNSUPPORTED: Record<string, string> = {
  HEALTHCHECK: "health checks are not run by Corral",
  ONBUILD: "triggers for later builds are not supported",
  VOLUME: "volumes are not supported: a VM's disk is its own",
  STOPSIGNAL: "stop signals are not supported",
};

const KNOWN = new Set(["FROM", "ARG", "ENV", "LABEL", "RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "MAINTAINER"]);

export function dockerfileError(line: number, message: string): CorralError {
  return new CorralError("invalid_dockerfile", `Dockerfile line ${line}: ${message}`);
}

const DIRECTIVE = /^#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*?)\s*$/;

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  let escapeChar = "\\";
  let index = 0;
  // Parser directives come first, before any comment, blank line or instruction.
  const seen = new Set<string>();
  for (; index < lines.length; index++) {
    const match = DIRECTIVE.exec(lines[index] as string);
    if (!match) break;
    const key = (match[1] as string).toLowerCase();
    const value = match[2] as string;
    if (seen.has(key)) throw dockerfileError(index + 1, `the parser directive "${key}" is given twice`);
    seen.add(key);
    if (key === "escape") {
      if (value !== "\\" && value !== "`") throw dockerfileError(index + 1, `the escape directive must be "\\" or "\`", got ${JSON.stringify(value)}`);
      escapeChar = value;
    } else if (key === "syntax" || key === "check") {
      // A frontend image or lint settings: Corral parses the Dockerfile itself, so both are notes only.
    } else {
      throw dockerfileError(index + 1, `unknown parser directive ${JSON.stringify(key)} (Corral knows "syntax", "escape" and "check")`);
    }
  }

  const instructions: Instruction[] = [];
  while (index < lines.length) {
    const raw = lines[index] as string;
    const start = index + 1;
    index++;
    if (/^\s*(#|$)/.test(raw)) continue;
    let logical = raw;
    // A line ending in the escape character continues on the next; comment and blank lines inside are skipped.
    while (endsWithEscape(logical, escapeChar)) {
      logical = logical.replace(/\s*$/, "").slice(0, -1);
      let continued = false;
      while (index < lines.length) {
        const next = lines[index] as string;
        index++;
        if (/^\s*#/.test(next) || next.trim() === "") continue;
        logical += next;
        continued = true;
        break;
      }
      if (!continued) break;
    }
    const instruction = parseInstruction(logical.trim(), start);
    if (instruction.kind === "FROM" && instructions.some((i) => i.kind === "FROM")) {
      throw dockerfileError(start, "a second FROM: multi-stage builds are not supported");
    }
    instructions.push(instruction);
  }
  if (instructions.length === 0) throw new CorralError("invalid_dockerfile", "The Dockerfile has no instructions: it must start with FROM");
  checkStructure(instructions);
  return { escape: escapeChar, instructions };
}

function endsWithEscape(line: string, escapeChar: string): boolean {
  return line.replace(/\s*$/, "").endsWith(escapeChar);
}

function parseInstruction(text: string, line: number): Instruction {
  const match = /^(\S+)\s*(.*)$/s.exec(text) as RegExpExecArray;
  const keyword = (match[1] as string).toUpperCase();
  const rest = (match[2] as string).trim();
  const at = { line, source: `${keyword}${rest ? ` ${rest}` : ""}` };
  if (UNSUPPORTED[keyword]) throw dockerfileError(line, `${keyword} is not supported: ${UNSUPPORTED[keyword]}`);
  if (!KNOWN.has(keyword)) throw dockerfileError(line, `unknown instruction ${JSON.stringify(match[1])}`);
  const { flags, remainder } = takeFlags(rest);
  const allowed: Record<string, string[]> = { COPY: ["chown", "chmod"], ADD: ["chown", "chmod"] };
  for (const flag of Object.keys(flags)) {
    if (!(allowed[keyword] ?? []).includes(flag)) {
      const why =
        flag === "from"
          ? "multi-stage builds are not supported"
          : flag === "mount" || flag === "network" || flag === "security"
            ? "RUN options are not supported"
            : "Corral does not support this option";
      throw dockerfileError(line, `${keyword} --${flag} is not supported: ${why}`);
    }
  }
  if (remainder === "") throw dockerfileError(line, `${keyword} needs arguments`);
  switch (keyword) {
    case "FROM": {
      const words = remainder.split(/\s+/);
      if (words.length === 3 && words[1]?.toUpperCase() === "AS") return { ...at, kind: "FROM", args: words[0] as string, alias: words[2] as string };
      if (words.length !== 1) throw dockerfileError(line, `FROM takes one image name (optionally "AS name"), got ${JSON.stringify(remainder)}`);
      return { ...at, kind: "FROM", args: remainder };
    }
    case "RUN":
    case "CMD":
    case "ENTRYPOINT":
      return { ...at, kind: keyword, command: commandForm(remainder, line, keyword) };
    case "SHELL": {
      const argv = jsonArray(remainder);
      if (!argv || argv.length === 0) throw dockerfileError(line, 'SHELL must be written in JSON form, e.g. SHELL ["/bin/sh", "-c"]');
      return { ...at, kind: "SHELL", argv };
    }
    case "COPY":
    case "ADD": {
      const json = jsonArray(remainder);
      const words = json ?? remainder.split(/\s+/);
      if (words.length < 2) throw dockerfileError(line, `${keyword} needs at least one source and a destination`);
      return {
        ...at,
        kind: keyword,
        words,
        json: json !== undefined,
        ...(flags.chown !== undefined ? { chown: flags.chown } : {}),
        ...(flags.chmod !== undefined ? { chmod: flags.chmod } : {}),
      };
    }
    default:
      return { ...at, kind: keyword as "ARG" | "ENV" | "LABEL" | "WORKDIR" | "USER" | "EXPOSE" | "MAINTAINER", args: remainder };
  }
}

/** Leading `--name=value` (or `--name`) options. */
function takeFlags(text: string): { flags: Record<string, string>; remainder: string } {
  const flags: Record<string, string> = {};
  let remainder = text;
  for (;;) {
    const match = /^--([A-Za-z][A-Za-z0-9-]*)(?:=(\S*))?\s*/.exec(remainder);
    if (!match) break;
    flags[(match[1] as string).toLowerCase()] = match[2] ?? "";
    remainder = remainder.slice(match[0].length);
  }
  return { flags, remainder: remainder.trim() };
}

function jsonArray(text: string): string[] | undefined {
  if (!text.startsWith("[")) return undefined;
  try {
    const value = JSON.parse(text) as unknown;
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value as string[];
  } catch {
    // Not JSON: Docker then takes the text as the shell form.
  }
  return undefined;
}

function commandForm(text: string, line: number, keyword: string): CommandForm {
  const argv = jsonArray(text);
  if (argv) {
    if (argv.length === 0 && keyword === "RUN") throw dockerfileError(line, "RUN needs a command");
    return { form: "exec", argv };
  }
  return { form: "shell", text };
}

function checkStructure(instructions: Instruction[]): void {
  const first = instructions.find((i) => i.kind !== "ARG");
  if (first?.kind !== "FROM") throw dockerfileError(first?.line ?? 1, "the first instruction must be FROM (only ARG may come before it)");
}
