import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { blankEnvForm, blankVm, buildCreateEnv, parsePorts, parseSshKeys, type EnvFormValues } from "../../web/src/lib/env-form.ts";
import { matchRoute, paths } from "../../web/src/lib/routes.ts";
import { sshCommand } from "../../src/protocol/vm-access.ts";

const form = (patch: Partial<EnvFormValues> = {}): EnvFormValues => ({ ...blankEnvForm("base"), id: "team", ...patch });

describe("create-environment form", () => {
  test("every field reaches the request body", () => {
    const built = buildCreateEnv(
      form({
        owner: " alice ",
        sshKeys: "ssh-ed25519 AAAA alice@laptop\n\n# old key\nssh-rsa BBBB bob",
        lifetime: "90",
        lifetimeUnit: "minutes",
        vms: [
          { ...blankVm("base"), cpu: "1", mem: "512", disk: "2048", ports: "80, 443 8080", denyOutgoing: true },
          { ...blankVm("base"), engine: "" },
        ],
      }),
    );
    assert.deepEqual(built, {
      ok: true,
      body: {
        id: "team",
        owner: "alice",
        ssh_keys: ["ssh-ed25519 AAAA alice@laptop", "ssh-rsa BBBB bob"],
        lifetime: 5400,
        vms: [
          { image: "base", engine: "qemu", cpu: 1, mem: 512, disk: 2048, ports: [80, 443, 8080], deny_outgoing: true },
          { image: "base", engine: "qemu", cpu: 2, mem: 1024, disk: 40960, ports: [], deny_outgoing: false },
        ],
      },
    });
  });

  test("no owner leaves the field out; lifetime in hours and days", () => {
    const hours = buildCreateEnv(form({ lifetime: "1.5" }));
    assert.ok(hours.ok);
    assert.equal(hours.body.lifetime, 5400);
    assert.equal("owner" in hours.body, false);
    const days = buildCreateEnv(form({ lifetime: "30", lifetimeUnit: "days" }));
    assert.ok(days.ok);
    assert.equal(days.body.lifetime, 30 * 86400);
  });

  test("mistakes are reported with the field", () => {
    const error = (values: EnvFormValues) => {
      const built = buildCreateEnv(values);
      assert.equal(built.ok, false);
      return built.ok ? "" : built.error;
    };
    assert.match(error(form({ id: "bad id" })), /^Environment ID must be letters, digits/);
    assert.match(error(form({ id: ".hidden" })), /Environment ID/);
    assert.match(error(form({ id: "a..b" })), /Environment ID/);
    assert.ok(buildCreateEnv(form({ id: "Team_A.1" })).ok, "TTstack's names are taken");
    const keyless = buildCreateEnv(form({ sshKeys: "" }));
    assert.ok(keyless.ok && !("ssh_keys" in keyless.body), "no keys: the field is left out");
    assert.match(error(form({ lifetime: "0" })), /^Lifetime must be a positive number/);
    assert.match(error(form({ lifetime: "31", lifetimeUnit: "days" })), /at most 30 days/);
    assert.equal(error(form({ vms: [] })), "Add at least one VM");
    assert.equal(error(form({ vms: [blankVm("")] })), "VM 1: choose an image");
    assert.match(error(form({ vms: [blankVm("base"), { ...blankVm("base"), cpu: "0" }] })), /^VM 2: vCPUs must be a whole number from 1 to 64, got "0"/);
    assert.match(error(form({ vms: [{ ...blankVm("base"), mem: "1.5" }] })), /^VM 1: memory \(MiB\)/);
    assert.equal(error(form({ vms: [{ ...blankVm("base"), ports: "80, http" }] })), 'VM 1: "http" is not a port (1-65535)');
  });

  test("ports and keys parse leniently", () => {
    assert.deepEqual(parsePorts(""), []);
    assert.deepEqual(parsePorts(" 22,80\t443 "), [22, 80, 443]);
    assert.throws(() => parsePorts("0"), /"0" is not a port/);
    assert.throws(() => parsePorts("65536"), /"65536" is not a port/);
    assert.deepEqual(parseSshKeys("\r\nssh-ed25519 A\r\n  # c\r\n"), ["ssh-ed25519 A"]);
  });
});

describe("routes", () => {
  test("each page's URL matches back to it", () => {
    assert.deepEqual(matchRoute("/"), { page: "overview" });
    assert.deepEqual(matchRoute(paths.hosts()), { page: "hosts" });
    assert.deepEqual(matchRoute(paths.host("h-1")), { page: "host", id: "h-1" });
    assert.deepEqual(matchRoute(paths.envs()), { page: "envs" });
    assert.deepEqual(matchRoute("/envs/team/"), { page: "env", id: "team" });
    assert.deepEqual(matchRoute(paths.vm("h.1", "team-1")), { page: "vm", hostId: "h.1", vmName: "team-1" });
    assert.deepEqual(matchRoute("/vms/a%2Fb/c"), { page: "vm", hostId: "a/b", vmName: "c" });
    assert.deepEqual(matchRoute("/vms/h"), { page: "not-found", path: "/vms/h" });
    assert.deepEqual(matchRoute("/nope/%E0"), { page: "not-found", path: "/nope/%E0" });
  });

  test("the ssh line uses the port mapped to 22", () => {
    assert.equal(sshCommand({ host_addr: "10.0.0.2", port_map: { "22": 41203, "80": 41207 } }), "ssh -p 41203 root@10.0.0.2");
    assert.equal(sshCommand({ host_addr: "10.0.0.2", port_map: {} }), undefined);
    assert.equal(sshCommand({ host_addr: "[fd00::2]", port_map: { "22": 2222 } }), "ssh -p 2222 root@fd00::2");
  });
});
