// libvirt URIs as the controller accepts them (src/controller/drivers/libvirt/uri.ts): the qemu driver's
// transports read into their parts, and every query parameter that would run, write or reach something on the
// controller's machine refused with a sentence naming it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isLibvirtUri, parseLibvirtUri, type LibvirtUri } from "../../src/controller/drivers/libvirt-driver.ts";

function accepted(uri: string): LibvirtUri {
  const parsed = parseLibvirtUri(uri);
  if ("problem" in parsed) assert.fail(`${uri} refused: ${parsed.problem}`);
  return parsed;
}

function refused(uri: string, pattern: RegExp): void {
  const parsed = parseLibvirtUri(uri);
  assert.ok("problem" in parsed, `${uri} was accepted`);
  assert.match(parsed.problem, pattern);
}

describe("libvirt URIs", () => {
  test("the local daemons", () => {
    assert.deepEqual(accepted("qemu:///system"), {
      uri: "qemu:///system",
      driver: "qemu",
      transport: "local",
      user: null,
      host: null,
      port: null,
      path: "/system",
      params: {},
      connectUri: "qemu:///system",
    });
    assert.equal(accepted("qemu:///session").path, "/session");
    assert.equal(accepted("qemu+unix:///system").transport, "unix");
    assert.equal(accepted("qemu:///system/").path, "/system");
  });

  test("ssh with user, port and the safe parameters; BatchMode always on", () => {
    const uri = "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/root/.ssh/id_ed25519&no_verify=1";
    const parsed = accepted(uri);
    assert.equal(parsed.transport, "ssh");
    assert.equal(parsed.user, "root");
    assert.equal(parsed.host, "127.0.0.1");
    assert.equal(parsed.port, 2222);
    assert.deepEqual(parsed.params, { keyfile: "/root/.ssh/id_ed25519", no_verify: "1" });
    assert.equal(parsed.connectUri, `${uri}&no_tty=1`);
    assert.equal(accepted("qemu+ssh://host.example/system").connectUri, "qemu+ssh://host.example/system?no_tty=1");
    assert.equal(accepted("qemu+ssh://h/system?no_tty=0&mode=direct").connectUri, "qemu+ssh://h/system?mode=direct&no_tty=1");
    assert.equal(accepted("qemu+ssh://h/system?no_tty=1").connectUri, "qemu+ssh://h/system?no_tty=1");
    assert.equal(accepted("qemu+ssh://[::1]:22/system").host, "[::1]");
    assert.equal(accepted("qemu+ssh://h/system?keyfile=%2Froot%2Fkey").params.keyfile, "/root/key");
  });

  test("tcp and tls; a host without a transport is TLS, as libvirt reads it", () => {
    assert.equal(accepted("qemu+tcp://10.0.0.2:16509/system").port, 16509);
    assert.deepEqual(accepted("qemu+tls://h.example/system?pkipath=/etc/pki/corral&no_verify=1").params, { pkipath: "/etc/pki/corral", no_verify: "1" });
    assert.equal(accepted("qemu://h.example/system").transport, "tls");
  });

  test("parameters that run programs or reach sockets are refused, naming the parameter", () => {
    refused("qemu+ssh://h/system?command=/tmp/evil", /parameter "command" is refused: it names the program libvirt runs on the controller's machine/);
    refused("qemu+ssh://h/system?netcat=/tmp/evil", /parameter "netcat" is refused/);
    refused("qemu+ssh://h/system?proxy=netcat", /parameter "proxy" is refused/);
    refused("qemu+unix:///system?socket=/run/other.sock", /parameter "socket" is refused: it names a socket path/);
    refused("qemu+ssh://h/system?name=qemu:///session", /parameter "name" is refused/);
    refused("qemu+ssh://h/system?known_hosts=/etc/passwd", /parameter "known_hosts" is refused: .*writes/);
    refused("qemu+ssh://h/system?sshauth=password", /parameter "sshauth" is refused/);
    refused(
      "qemu+ssh://h/system?tls_priority=NORMAL",
      /parameter "tls_priority" is refused: it is not one Corral lets through to libvirt \(keyfile, no_verify, no_tty, mode, pkipath\)/,
    );
    // Encoded names are decoded before they are judged.
    refused("qemu+ssh://h/system?%63ommand=/tmp/evil", /parameter "command" is refused/);
    refused("qemu+ssh://h/system?keyfile=/a&keyfile=/b", /"keyfile" is given twice/);
  });

  test("allowed parameters take only their values and transports", () => {
    refused("qemu+ssh://h/system?keyfile=relative/key", /"keyfile" must be an absolute path, not "relative\/key"/);
    refused("qemu+ssh://h/system?keyfile=/root/../etc/shadow", /"keyfile" must be an absolute path/);
    refused("qemu+ssh://h/system?keyfile=/a%0A-oProxyCommand=x", /"keyfile" must be an absolute path/);
    refused("qemu+ssh://h/system?no_verify=yes", /"no_verify" must be 0 or 1, not "yes"/);
    refused("qemu+ssh://h/system?mode=shell", /"mode" must be auto, legacy or direct/);
    refused("qemu:///system?keyfile=/k", /"keyfile" is read by qemu\+ssh only, not by qemu$/);
    refused("qemu+tcp://h/system?pkipath=/p", /"pkipath" is read by qemu\+tls only, not by qemu\+tcp/);
    refused("qemu+ssh://h/system?keyfile=%zz", /not well %-encoded/);
  });

  test("other drivers, transports, hosts and paths are refused", () => {
    refused("xen:///system", /qemu driver only, not "xen"/);
    refused("test:///default", /qemu driver only/);
    refused("qemu+ext:///system?command=/bin/sh", /transport "ext" is not one Corral accepts/);
    refused("qemu+libssh2://h/system", /transport "libssh2"/);
    refused("qemu:///system#frag", /#fragment/);
    refused("qemu+ssh:///system", /needs the remote machine's name/);
    refused("qemu+unix://h/system", /names no user, host or port/);
    refused("qemu+ssh://-oProxyCommand=x/system", /host "-oProxyCommand=x" is not a host name/);
    refused("qemu+ssh://-l@h/system", /user "-l" is not a user name/);
    refused("qemu+tcp://u@h/system", /only qemu\+ssh takes a user/);
    refused("qemu+ssh://h:0/system", /port "0" is not a port number/);
    refused("qemu+ssh://h:99999/system", /port "99999"/);
    refused("qemu+ssh://h/", /path must be \/system or \/session/);
    refused("qemu+ssh://h", /path must be \/system or \/session .*, not "\(none\)"/);
    refused("qemu:///embed?root=/tmp", /path must be/);
    refused("qemu:///system\n", /control characters/);
    refused("http://h:8080", /not of the form|qemu driver only/);
    refused(`qemu:///${"s".repeat(1100)}`, /1024/);
  });

  test("isLibvirtUri tells libvirt URIs from a daemon's http address", () => {
    assert.equal(isLibvirtUri("qemu+ssh://h/system"), true);
    assert.equal(isLibvirtUri("qemu:///system"), true);
    assert.equal(isLibvirtUri("http://h:8080"), false);
  });
});
