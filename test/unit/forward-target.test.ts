import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatForwardTarget, parseForwardTarget } from "../../src/protocol/forward.ts";
import { parseForwardSpec } from "../../src/sdk/forward-spec.ts";

describe("X-Inlets-Upstream targets", () => {
  test("HOST:PORT, [IPV6]:PORT and unix:/path", () => {
    assert.deepEqual(parseForwardTarget("127.0.0.1:8080"), { kind: "tcp", host: "127.0.0.1", port: 8080 });
    assert.deepEqual(parseForwardTarget("localhost:22"), { kind: "tcp", host: "localhost", port: 22 });
    assert.deepEqual(parseForwardTarget("[::1]:443"), { kind: "tcp", host: "::1", port: 443 });
    assert.deepEqual(parseForwardTarget("unix:/var/run/docker.sock"), { kind: "unix", path: "/var/run/docker.sock" });
    assert.equal(formatForwardTarget({ kind: "tcp", host: "::1", port: 443 }), "[::1]:443");
    assert.equal(formatForwardTarget(parseForwardTarget("unix:/run/a.sock")), "unix:/run/a.sock");
  });

  test("every malformed value is refused with a message that says why", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /not an address/],
      ["8080", /not an address/],
      [":8080", /not an address/],
      ["127.0.0.1:", /invalid port ""/],
      ["127.0.0.1:0", /invalid port "0"/],
      ["127.0.0.1:65536", /invalid port/],
      ["127.0.0.1:http", /invalid port "http"/],
      ["bad host:80", /invalid host "bad host"/],
      ["[zz]:80", /invalid IPv6/],
      ["unix:relative.sock", /not an absolute socket path/],
      ["unix:/a\0b", /NUL/],
      [`unix:/${"x".repeat(120)}`, /longer than 107 bytes/],
    ];
    for (const [value, message] of cases) assert.throws(() => parseForwardTarget(value), message, value);
  });
});

describe("-L forward specs", () => {
  const summary = (spec: string): string => {
    const m = parseForwardSpec(spec);
    const listen = m.listen.kind === "unix" ? m.listen.path : `${m.listen.host}:${m.listen.port}`;
    return `${listen} -> ${formatForwardTarget(m.target)}`;
  };

  test("the forms of Slicer's CLI, listening on 127.0.0.1 unless told otherwise", () => {
    assert.equal(summary("3000"), "127.0.0.1:3000 -> 127.0.0.1:3000");
    assert.equal(summary("8080:80"), "127.0.0.1:8080 -> 127.0.0.1:80");
    assert.equal(summary("127.0.0.1:9000"), "127.0.0.1:9000 -> 127.0.0.1:9000");
    assert.equal(summary("8080:127.0.0.1:80"), "127.0.0.1:8080 -> 127.0.0.1:80");
    assert.equal(summary("0:127.0.0.1:80"), "127.0.0.1:0 -> 127.0.0.1:80");
    assert.equal(summary("127.0.0.1:8080:127.0.0.1:80"), "127.0.0.1:8080 -> 127.0.0.1:80");
    assert.equal(summary("0.0.0.0:8080:10.0.2.15:80"), "0.0.0.0:8080 -> 10.0.2.15:80");
    assert.equal(summary("8080:localhost:80"), "127.0.0.1:8080 -> localhost:80");
  });

  test("unix sockets in the guest, and unix sockets here", () => {
    assert.equal(summary("9000:unix:/var/run/docker.sock"), "127.0.0.1:9000 -> unix:/var/run/docker.sock");
    assert.equal(summary("9000:/var/run/docker.sock"), "127.0.0.1:9000 -> unix:/var/run/docker.sock");
    assert.equal(summary("127.0.0.1:9000:/var/run/docker.sock"), "127.0.0.1:9000 -> unix:/var/run/docker.sock");
    assert.equal(summary("/tmp/docker.sock:/var/run/docker.sock"), "/tmp/docker.sock -> unix:/var/run/docker.sock");
    assert.equal(summary("./d.sock:unix:/var/run/docker.sock"), "./d.sock -> unix:/var/run/docker.sock");
  });

  test("bad specs are refused naming the problem", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /it is empty/],
      ["0", /"0" is not a port \(1 to 65535\)/],
      ["http", /"http" is not a port/],
      ["70000:80", /"70000" is not a port/],
      ["8080:", /empty part/],
      ["host:8080:80", /local port "host" is not a number/],
      ["1:2:3:4:5", /too many parts/],
      ["unix:/a.sock", /name the local port/],
      ["8080:unix:relative", /not an absolute socket path/],
      ["8080:127.0.0.1:0", /invalid port "0"/],
    ];
    for (const [spec, message] of cases) assert.throws(() => parseForwardSpec(spec), message, spec);
  });
});
