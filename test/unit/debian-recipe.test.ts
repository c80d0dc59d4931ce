// The debian image's recipe: which mirrors it takes from the host's apt sources, how it reads a Release date,
// and what it changes in the root filesystem.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { aptListName, debianCommands, debianFiles, MASKED_UNITS, mirrorLines, parseAptSources, releaseDate, SSH_SOCKET } from "../../src/image/debian-recipe.ts";

const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
Enabled: no
`;

describe("parseAptSources", () => {
  test("deb822: Debian's suites only, each suite its own entry; sources, vendors and disabled stanzas left out", () => {
    assert.deepEqual(parseAptSources(DEB822), [
      { uri: "http://deb.debian.org/debian", suite: "bookworm", components: ["main"] },
      { uri: "http://deb.debian.org/debian", suite: "bookworm-updates", components: ["main"] },
      { uri: "http://deb.debian.org/debian-security", suite: "bookworm-security", components: ["main", "contrib"] },
    ]);
  });

  test("one-line sources.list: options in brackets and comments are ignored", () => {
    const text =
      "# a comment\ndeb [signed-by=/k.gpg arch=amd64] http://ftp.de.debian.org/debian bookworm main non-free-firmware\ndeb-src http://x/debian bookworm main\ndeb http://x/ubuntu jammy main\n";
    assert.deepEqual(parseAptSources(text), [{ uri: "http://ftp.de.debian.org/debian", suite: "bookworm", components: ["main", "non-free-firmware"] }]);
  });

  test("no Debian archive at all gives nothing (the builder then says what to add)", () => {
    assert.deepEqual(parseAptSources("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n"), []);
  });

  test("mirror lines are what mmdebstrap takes, without duplicates", () => {
    const sources = parseAptSources(`${DEB822}\n${DEB822}`);
    assert.deepEqual(mirrorLines(sources), [
      "deb http://deb.debian.org/debian bookworm main",
      "deb http://deb.debian.org/debian bookworm-updates main",
      "deb http://deb.debian.org/debian-security bookworm-security main contrib",
    ]);
  });
});

describe("Release files", () => {
  test("the Date field is read", () => {
    assert.equal(releaseDate("Origin: Debian\nLabel: Debian\nSuite: stable\nDate: Sat, 05 Dec 2026 03:33:28 UTC\nValid-Until: x\n"), "Sat, 05 Dec 2026 03:33:28 UTC");
    assert.equal(releaseDate("Origin: Debian\n"), undefined);
  });

  test("apt's list names are derived from the URI and suite", () => {
    assert.equal(aptListName("http://deb.debian.org/debian", "bookworm"), "deb.debian.org_debian_dists_bookworm_InRelease");
    assert.equal(aptListName("http://deb.debian.org/debian-security/", "bookworm-security"), "deb.debian.org_debian-security_dists_bookworm-security_InRelease");
  });
});

describe("the root filesystem's changes", () => {
  test("the default user gets passwordless sudo by name, in a file sudo accepts (0440, no dot in its name)", () => {
    const files = debianFiles("debian");
    const sudoers = files["etc/sudoers.d/90-corral-debian"];
    assert.ok(sudoers);
    assert.equal(sudoers.mode, 0o440);
    assert.match(sudoers.contents, /^debian ALL=\(ALL:ALL\) NOPASSWD:ALL$/m);
  });

  test("the machine id is empty (made per VM) and no SSH host key survives the build", () => {
    assert.equal(debianFiles("debian")["etc/machine-id"]?.contents, "");
    const commands = debianCommands("debian").map((c) => c.join(" "));
    assert.ok(commands.includes("sh -c rm -f /etc/ssh/ssh_host_*"));
    assert.ok(commands.some((c) => c.startsWith("useradd ") && c.includes("--uid 1000") && c.endsWith(" debian")));
  });

  test("sshd starts per connection (Accept=yes, sshd -i) and the always-on service is masked", () => {
    assert.ok(MASKED_UNITS.includes("ssh.service"));
    assert.ok(debianCommands("debian").some((c) => c[0] === "systemctl" && c[1] === "enable" && c.includes(SSH_SOCKET)));
    const files = debianFiles("debian");
    assert.match(files[`etc/systemd/system/${SSH_SOCKET}`]?.contents ?? "", /^Accept=yes$/m);
    assert.match(files["etc/systemd/system/corral-ssh@.service"]?.contents ?? "", /^ExecStart=-\/usr\/sbin\/sshd -i$/m);
  });
});
