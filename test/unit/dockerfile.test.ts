import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DockerIgnore } from "../../src/image/dockerfile/dockerignore.ts";
import { parseDockerfile } from "../../src/image/dockerfile/parse.ts";
import { planBuild, type BuildStep } from "../../src/image/dockerfile/plan.ts";
import { expandWord, splitWords } from "../../src/image/dockerfile/words.ts";
import { CorralError } from "../../src/protocol/errors.ts";

function plan(text: string, buildArgs: Record<string, string> = {}, parentConfig = {}) {
  return planBuild(parseDockerfile(text), { buildArgs, parentConfig });
}

function refused(text: string, pattern: RegExp): void {
  assert.throws(
    () => plan(text),
    (err: unknown) => err instanceof CorralError && err.code === "invalid_dockerfile" && pattern.test(err.message),
  );
}

function runs(steps: BuildStep[]) {
  return steps.filter((s) => s.kind === "run");
}

describe("Dockerfile words", () => {
  const vars: Record<string, string> = { A: "a", EMPTY: "", SP: "x y" };
  const lookup = (name: string) => vars[name];

  test("substitutes $VAR, ${VAR} and the :- :+ - + forms", () => {
    assert.equal(expandWord("$A/${A}b", lookup, "\\"), "a/ab");
    assert.equal(expandWord("${NOPE:-def}|${EMPTY:-def}|${EMPTY-def}|${NOPE-def}", lookup, "\\"), "def|def||def");
    assert.equal(expandWord("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${NOPE+alt}", lookup, "\\"), "alt||alt|");
    assert.equal(expandWord("${NOPE:-$A-x}", lookup, "\\"), "a-x");
    assert.equal(expandWord("cost$", lookup, "\\"), "cost$");
  });

  test("quotes and the escape character", () => {
    assert.equal(expandWord("'$A'", lookup, "\\"), "$A");
    assert.equal(expandWord('"$A b"', lookup, "\\"), "a b");
    assert.equal(expandWord("\\$A", lookup, "\\"), "$A");
    assert.equal(expandWord('"a\\nb"', lookup, "\\"), "a\\nb");
    assert.equal(expandWord("`$A", lookup, "`"), "$A");
    assert.deepEqual(splitWords(`a "b c" 'd e' f\\ g`, "\\"), ["a", '"b c"', "'d e'", "f\\ g"]);
    assert.throws(() => splitWords('a "b', "\\"), /Unterminated quote/);
  });

  test("an unsupported substitution is refused", () => {
    assert.throws(() => expandWord("${A%%x}", lookup, "\\"), /Unsupported substitution/);
  });
});

describe("Dockerfile parser", () => {
  test("comments, continuations and both command forms", () => {
    const df = parseDockerfile(["# a comment", "FROM base", "RUN echo one \\", "  # inside", "  two", 'CMD ["node", "app.js"]', "ENTRYPOINT tini --"].join("\n"));
    assert.deepEqual(
      df.instructions.map((i) => [i.kind, i.line]),
      [
        ["FROM", 2],
        ["RUN", 3],
        ["CMD", 6],
        ["ENTRYPOINT", 7],
      ],
    );
    const run = df.instructions[1];
    assert.ok(run?.kind === "RUN");
    assert.deepEqual(run.command, { form: "shell", text: "echo one   two" });
    const cmd = df.instructions[2];
    assert.ok(cmd?.kind === "CMD");
    assert.deepEqual(cmd.command, { form: "exec", argv: ["node", "app.js"] });
  });

  test("keywords are case-insensitive", () => {
    assert.equal(parseDockerfile("from base\nrun true").instructions[1]?.kind, "RUN");
  });

  test("the escape directive changes the continuation character", () => {
    const df = parseDockerfile("# escape=`\nFROM base\nRUN echo a `\n  b");
    assert.equal(df.escape, "`");
    assert.deepEqual(
      df.instructions.map((i) => i.kind),
      ["FROM", "RUN"],
    );
  });

  test("the syntax directive is accepted; an unknown directive is refused naming the line", () => {
    assert.equal(parseDockerfile("# syntax=docker/dockerfile:1\nFROM base").instructions.length, 1);
    refused("# frobnicate=yes\nFROM base", /line 1: unknown parser directive "frobnicate"/);
    refused("# escape=x\nFROM base", /line 1: the escape directive/);
  });

  test("unsupported instructions are refused naming the line and the instruction", () => {
    refused("FROM base\nRUN true\nHEALTHCHECK CMD true", /line 3: HEALTHCHECK is not supported/);
    refused("FROM base\nONBUILD RUN true", /line 2: ONBUILD is not supported/);
    refused("FROM base\nVOLUME /data", /line 2: VOLUME is not supported/);
    refused("FROM base\nSTOPSIGNAL SIGTERM", /line 2: STOPSIGNAL is not supported/);
    refused("FROM base\nFROBNICATE x", /line 2: unknown instruction "FROBNICATE"/);
  });

  test("multi-stage builds are refused clearly", () => {
    refused("FROM base AS one\nRUN true\nFROM base\nCOPY --from=one /a /a", /line 3: a second FROM: multi-stage builds are not supported/);
    refused("FROM base\nCOPY --from=other /a /a", /line 2: COPY --from is not supported: multi-stage builds/);
    refused("FROM base\nRUN --mount=type=cache,target=/x true", /line 2: RUN --mount is not supported/);
  });

  test("structure: FROM first, instructions present", () => {
    refused("RUN true", /line 1: the first instruction must be FROM/);
    refused("# only a comment\n", /no instructions/);
    refused("FROM base\nSHELL /bin/bash -c", /line 2: SHELL must be written in JSON form/);
    refused("FROM base\nCOPY onlyone", /line 2: COPY needs at least one source and a destination/);
  });
});

describe("Dockerfile plan", () => {
  test("ARG before FROM names the image; --build-arg overrides defaults", () => {
    assert.equal(plan("ARG IMG=base\nFROM $IMG").from, "base");
    assert.equal(plan("ARG IMG=base\nFROM ${IMG}", { IMG: "debian" }).from, "debian");
  });

  test("ENV in both forms, substitution in later instructions, not in RUN", () => {
    const p = plan(["FROM base", 'ENV A=1 B="two words"', "ENV C $A-c", "WORKDIR /srv/$A", "RUN echo $A"].join("\n"));
    assert.deepEqual(p.config.env, ["A=1", "B=two words", "C=1-c"]);
    assert.equal(p.config.working_dir, "/srv/1");
    const [run] = runs(p.steps);
    assert.ok(run?.kind === "run");
    assert.deepEqual(run.argv, ["/bin/sh", "-c", "echo $A"]);
    assert.deepEqual(run.context, { env: ["A=1", "B=two words", "C=1-c"], workdir: "/srv/1", user: "" });
  });

  test("ARG after FROM is in RUN's environment but not in the image", () => {
    const p = plan("FROM base\nARG V=1\nARG W\nRUN true", { W: "w" });
    const [run] = runs(p.steps);
    assert.ok(run?.kind === "run");
    assert.deepEqual(run.context.env, ["V=1", "W=w"]);
    assert.equal(p.config.env, undefined);
    assert.deepEqual(plan("FROM base", { NOPE: "x" }).unusedArgs, ["NOPE"]);
  });

  test("a changed build arg changes the RUN step's context (and so its cache key)", () => {
    const a = runs(plan("FROM base\nARG V=1\nRUN true").steps)[0];
    const b = runs(plan("FROM base\nARG V=1\nRUN true", { V: "2" }).steps)[0];
    assert.notDeepEqual(a, b);
  });

  test("WORKDIR is relative to the previous one; COPY's destination to WORKDIR", () => {
    const p = plan("FROM base\nWORKDIR /app\nWORKDIR sub\nCOPY --chown=app:app a.txt b.txt ./\nCOPY dir conf");
    const copies = p.steps.filter((s) => s.kind === "copy");
    assert.equal(p.config.working_dir, "/app/sub");
    assert.deepEqual(
      copies.map((c) => c.kind === "copy" && [c.sources, c.dest, c.chown]),
      [
        [["a.txt", "b.txt"], "/app/sub/", "app:app"],
        [["dir"], "/app/sub/conf", undefined],
      ],
    );
    refused("FROM base\nCOPY a b /dest", /line 2: COPY with several sources needs a destination ending in "\/"/);
    refused("FROM base\nADD https://example.com/x.tgz /x", /line 2: ADD from a URL/);
  });

  test("SHELL, USER, LABEL, EXPOSE, CMD and ENTRYPOINT", () => {
    const p = plan(
      ["FROM base", 'SHELL ["/bin/bash", "-c"]', "USER app", "RUN id", 'LABEL a=b "c d"=e', "EXPOSE 8080 53/udp", "CMD node app.js", 'ENTRYPOINT ["tini", "--"]'].join("\n"),
    );
    const [run] = runs(p.steps);
    assert.ok(run?.kind === "run");
    assert.deepEqual(run.argv, ["/bin/bash", "-c", "id"]);
    assert.equal(run.context.user, "app");
    assert.deepEqual(p.config, { user: "app", labels: { a: "b", "c d": "e" }, cmd: ["/bin/bash", "-c", "node app.js"], entrypoint: ["tini", "--"] });
    assert.deepEqual(p.exposed, ["8080", "53/udp"]);
    refused("FROM base\nEXPOSE http", /line 2: EXPOSE takes ports/);
  });

  test("the parent's config carries over; an ENTRYPOINT drops only the parent's CMD", () => {
    const parent = { env: ["PATH=/bin"], cmd: ["sh"], user: "root", default_user: "debian" };
    assert.deepEqual(plan("FROM base\nENV X=1", {}, parent).config, { env: ["PATH=/bin", "X=1"], cmd: ["sh"], user: "root", default_user: "debian" });
    assert.equal(plan('FROM base\nENTRYPOINT ["a"]', {}, parent).config.cmd, undefined);
    assert.deepEqual(plan('FROM base\nCMD ["b"]\nENTRYPOINT ["a"]', {}, parent).config.cmd, ["b"]);
  });

  test("steps are numbered over all instructions and only RUN/COPY/ADD need a VM", () => {
    const p = plan("FROM base\nENV A=1\nRUN true\nCOPY a /a\nCMD x");
    assert.deepEqual(
      p.steps.map((s) => [s.number, s.kind]),
      [
        [1, "meta"],
        [2, "meta"],
        [3, "run"],
        [4, "copy"],
        [5, "meta"],
      ],
    );
  });
});

describe(".dockerignore", () => {
  test("patterns, directories, ** and ! exceptions (last match wins)", () => {
    const ignore = new DockerIgnore(["# comment", "node_modules", "*.log", "!keep.log", "docs/**/*.md", "/build/", "tmp?"].join("\n"));
    assert.equal(ignore.ignores("node_modules"), true);
    assert.equal(ignore.ignores("node_modules/x/y.js"), true);
    assert.equal(ignore.ignores("a.log"), true);
    assert.equal(ignore.ignores("keep.log"), false);
    assert.equal(ignore.ignores("sub/a.log"), false, "a pattern without ** matches from the root only");
    assert.equal(ignore.ignores("docs/a/b/c.md"), true);
    assert.equal(ignore.ignores("docs/c.md"), true);
    assert.equal(ignore.ignores("docs/c.txt"), false);
    assert.equal(ignore.ignores("build/out.bin"), true);
    assert.equal(ignore.ignores("tmp1"), true);
    assert.equal(ignore.ignores("src/app.js"), false);
    assert.equal(new DockerIgnore("").empty, true);
  });
});
