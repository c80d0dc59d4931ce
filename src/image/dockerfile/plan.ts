// Evaluates a parsed Dockerfile into build steps, as Docker's builder does instruction by instruction: ARG
// scope (before FROM only for FROM; after FROM in RUN's environment, not in the image), ENV, WORKDIR, USER,
// SHELL, and the image config that ends up in the manifest. Pure: the builder only carries steps out.
import { posix } from "node:path";
import type { ImageConfig } from "../image-store.ts";
import { dockerfileError, type CommandForm, type Dockerfile, type Instruction } from "./parse.ts";
import { expandWord, splitWords, WordError, type Lookup } from "./words.ts";

/** What a step runs with: the state the instructions before it left. */
export interface StepContext {
  /** "KEY=VALUE": ENV entries, then build args in scope that ENV does not override. */
  env: string[];
  workdir: string;
  /** As written after USER (name, uid, name:group, uid:gid); "" for root. */
  user: string;
}

interface StepBase {
  /** 1-based position among all instructions (Docker's "Step N/M"). */
  number: number;
  line: number;
  /** The instruction after substitution, as shown in progress and hashed into the cache key. */
  display: string;
}

export type BuildStep = StepBase &
  (
    | { kind: "run"; argv: string[]; context: StepContext }
    | { kind: "copy"; add: boolean; sources: string[]; dest: string; chown?: string; chmod?: string; context: StepContext }
    /** Changes the image's metadata only: no VM needed. */
    | { kind: "meta" }
  );

export interface BuildPlan {
  /** The Corral image FROM names. */
  from: string;
  steps: BuildStep[];
  /** The config the image gets (the parent's, changed by ENV, WORKDIR, USER, LABEL, CMD, ENTRYPOINT). */
  config: ImageConfig;
  /** Ports EXPOSE recorded. */
  exposed: string[];
  /** --build-arg names no ARG declared (Docker warns about them). */
  unusedArgs: string[];
}

export interface PlanOptions {
  buildArgs?: Record<string, string>;
  /** The FROM image's config: its ENV, WORKDIR, USER, CMD... carry over. */
  parentConfig?: ImageConfig;
}

const DEFAULT_SHELL = ["/bin/sh", "-c"];

/** The FROM image's name (after the global ARGs), without evaluating the rest. */
export function fromImage(dockerfile: Dockerfile, buildArgs: Record<string, string> = {}): string {
  return planBuild(dockerfile, { buildArgs }).from;
}

export function planBuild(dockerfile: Dockerfile, options: PlanOptions = {}): BuildPlan {
  const { escape: escapeChar } = dockerfile;
  const buildArgs = options.buildArgs ?? {};
  const parent = options.parentConfig ?? {};
  const declared = new Set<string>();
  const globalArgs = new Map<string, string | undefined>();
  const args = new Map<string, string | undefined>();
  const env = new Map<string, string>(parseEnvList(parent.env ?? []));
  const labels: Record<string, string> = { ...(parent.labels ?? {}) };
  let workdir = parent.working_dir ?? "/";
  let user = parent.user ?? "";
  let shell = DEFAULT_SHELL;
  let cmd = parent.cmd;
  let entrypoint = parent.entrypoint;
  let workdirSet = parent.working_dir !== undefined;
  const exposed: string[] = [];
  let from: string | undefined;
  const steps: BuildStep[] = [];

  const lookup: Lookup = (name) => env.get(name) ?? (from === undefined ? globalArgs.get(name) : args.get(name));
  const expand = (instruction: Instruction, word: string): string => {
    try {
      return expandWord(word, lookup, escapeChar);
    } catch (err) {
      throw dockerfileError(instruction.line, (err as Error).message);
    }
  };
  const words = (instruction: Instruction, text: string): string[] => {
    try {
      return splitWords(text, escapeChar);
    } catch (err) {
      if (err instanceof WordError) throw dockerfileError(instruction.line, err.message);
      throw err;
    }
  };
  const context = (): StepContext => ({
    env: [...[...env].map(([k, v]) => `${k}=${v}`), ...[...args].filter(([k, v]) => v !== undefined && !env.has(k)).map(([k, v]) => `${k}=${v}`)],
    workdir,
    user,
  });

  dockerfile.instructions.forEach((instruction, i) => {
    const number = i + 1;
    const meta = (display: string): void => void steps.push({ kind: "meta", number, line: instruction.line, display });
    switch (instruction.kind) {
      case "ARG": {
        for (const word of words(instruction, instruction.args)) {
          const eq = word.indexOf("=");
          const name = eq < 0 ? word : word.slice(0, eq);
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw dockerfileError(instruction.line, `invalid ARG name ${JSON.stringify(name)}`);
          declared.add(name);
          const fallback = eq < 0 ? (from === undefined ? undefined : globalArgs.get(name)) : expand(instruction, word.slice(eq + 1));
          const value = buildArgs[name] ?? fallback;
          (from === undefined ? globalArgs : args).set(name, value);
        }
        if (from !== undefined) meta(instruction.source);
        return;
      }
      case "FROM": {
        from = expand(instruction, instruction.args);
        if (!from) throw dockerfileError(instruction.line, "FROM names no image");
        meta(`FROM ${from}`);
        return;
      }
      case "ENV":
      case "LABEL": {
        const pairs = keyValues(instruction, words(instruction, instruction.args), expand, instruction.kind === "ENV");
        for (const [key, value] of pairs) {
          if (instruction.kind === "ENV") env.set(key, value);
          else labels[key] = value;
        }
        meta(`${instruction.kind} ${pairs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")}`);
        return;
      }
      case "MAINTAINER":
        labels.maintainer = instruction.args;
        meta(instruction.source);
        return;
      case "WORKDIR": {
        const path = expand(instruction, instruction.args);
        workdir = posix.resolve(workdir, path);
        workdirSet = true;
        meta(`WORKDIR ${workdir}`);
        return;
      }
      case "USER":
        user = expand(instruction, instruction.args);
        if (/\s/.test(user) || user === "")
          throw dockerfileError(instruction.line, `USER takes one user (name, uid, name:group or uid:gid), got ${JSON.stringify(instruction.args)}`);
        meta(`USER ${user}`);
        return;
      case "EXPOSE": {
        const ports = words(instruction, instruction.args).map((w) => expand(instruction, w));
        for (const port of ports) {
          if (!/^\d{1,5}(-\d{1,5})?(\/(tcp|udp|sctp))?$/i.test(port))
            throw dockerfileError(instruction.line, `EXPOSE takes ports such as 80 or 53/udp, got ${JSON.stringify(port)}`);
          exposed.push(port);
        }
        meta(`EXPOSE ${ports.join(" ")}`);
        return;
      }
      case "SHELL":
        shell = instruction.argv;
        meta(instruction.source);
        return;
      case "CMD":
        cmd = asArgv(instruction.command, shell);
        meta(instruction.source);
        return;
      case "ENTRYPOINT":
        entrypoint = asArgv(instruction.command, shell);
        // Docker: an ENTRYPOINT drops a CMD inherited from the parent image, not one set in this Dockerfile.
        if (cmd === parent.cmd) cmd = undefined;
        meta(instruction.source);
        return;
      case "RUN":
        steps.push({ kind: "run", number, line: instruction.line, display: instruction.source, argv: asArgv(instruction.command, shell), context: context() });
        return;
      case "COPY":
      case "ADD": {
        const expanded = instruction.json ? instruction.words.map((w) => expand(instruction, JSON.stringify(w))) : instruction.words.map((w) => expand(instruction, w));
        const sources = expanded.slice(0, -1);
        const rawDest = expanded[expanded.length - 1] as string;
        for (const source of sources) {
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source))
            throw dockerfileError(instruction.line, `${instruction.kind} from a URL (${JSON.stringify(source)}) is not supported: download it in a RUN step`);
        }
        const dest = posix.resolve(workdir, rawDest) + (rawDest.endsWith("/") && rawDest !== "/" ? "/" : "");
        if (sources.length > 1 && !dest.endsWith("/"))
          throw dockerfileError(instruction.line, `${instruction.kind} with several sources needs a destination ending in "/", got ${JSON.stringify(rawDest)}`);
        const chown = instruction.chown === undefined ? undefined : expand(instruction, instruction.chown);
        const chmod = instruction.chmod;
        if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod))
          throw dockerfileError(instruction.line, `--chmod takes octal permissions such as 0755, got ${JSON.stringify(chmod)}`);
        const options = `${chown !== undefined ? ` --chown=${chown}` : ""}${chmod !== undefined ? ` --chmod=${chmod}` : ""}`;
        steps.push({
          kind: "copy",
          add: instruction.kind === "ADD",
          number,
          line: instruction.line,
          display: `${instruction.kind}${options} ${[...sources, dest].join(" ")}`,
          sources,
          dest,
          ...(chown !== undefined ? { chown } : {}),
          ...(chmod !== undefined ? { chmod } : {}),
          context: context(),
        });
        return;
      }
    }
  });
  if (from === undefined) throw dockerfileError(1, "no FROM instruction");
  const config: ImageConfig = { ...parent };
  if (env.size > 0) config.env = [...env].map(([k, v]) => `${k}=${v}`);
  if (workdirSet) config.working_dir = workdir;
  if (user) config.user = user;
  if (Object.keys(labels).length > 0) config.labels = labels;
  if (cmd) config.cmd = cmd;
  else delete config.cmd;
  if (entrypoint) config.entrypoint = entrypoint;
  const unusedArgs = Object.keys(buildArgs).filter((name) => !declared.has(name));
  return { from, steps, config, exposed, unusedArgs };
}

function asArgv(command: CommandForm, shell: string[]): string[] {
  return command.form === "exec" ? command.argv : [...shell, command.text];
}

function parseEnvList(list: string[]): [string, string][] {
  return list.map((entry) => {
    const eq = entry.indexOf("=");
    return eq < 0 ? [entry, ""] : [entry.slice(0, eq), entry.slice(eq + 1)];
  });
}

/** `K=V K2="v 2"` pairs, or (ENV's and LABEL's legacy form) `K the rest is the value`. */
function keyValues(instruction: Instruction, words: string[], expand: (i: Instruction, w: string) => string, isEnv: boolean): [string, string][] {
  const name = isEnv ? "ENV" : "LABEL";
  if (words.length > 0 && !(words[0] as string).includes("=")) {
    if (words.length < 2) throw dockerfileError(instruction.line, `${name} needs a value: ${name} KEY=VALUE`);
    const key = words[0] as string;
    const rest = (instruction as { args: string }).args.slice((instruction as { args: string }).args.indexOf(key) + key.length).trim();
    return [[expand(instruction, key), expand(instruction, rest)]];
  }
  return words.map((word) => {
    const eq = word.indexOf("=");
    if (eq <= 0) throw dockerfileError(instruction.line, `${name} expects KEY=VALUE pairs, got ${JSON.stringify(word)}`);
    const key = expand(instruction, word.slice(0, eq));
    if (isEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw dockerfileError(instruction.line, `invalid ENV name ${JSON.stringify(key)}`);
    return [key, expand(instruction, word.slice(eq + 1))];
  });
}
