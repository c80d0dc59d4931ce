import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, DEFAULT_CONFIG_YAML, loadDaemonConfig, parseDaemonConfig, type DaemonConfig } from "../../src/daemon/config.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The problems a text is rejected with; fails the test when it parses. */
function problemsOf(text: string, source = "corral.yaml"): readonly string[] {
  try {
    parseDaemonConfig(text, source);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.name, "ConfigError");
    assert.equal(err.message, `Invalid configuration in ${source}:\n${err.problems.map((p) => `  - ${p}`).join("\n")}`);
    return err.problems;
  }
  assert.fail("expected the configuration to be rejected");
}

const groups = (yaml: string): string => `config:\n  host_groups:\n${yaml}`;

const DEFAULTS: DaemonConfig = {
  api: { bindAddress: "127.0.0.1", port: 8080, socket: undefined, authEnabled: false },
  accel: "auto",
  insecureRegistry: false,
  ksm: false,
  network: { hostIsolation: true, hostAccess: [], portRange: { first: 20000, last: 29999 }, vhost: "auto" },
  admission: { memoryReserveBytes: 512 * MiB, minFreeDiskBytes: 1024 * MiB },
  healthCheck: { intervalMs: 10_000, timeoutMs: 5_000, failures: 2 },
  hostGroups: [
    {
      name: "sbox",
      count: 0,
      vcpu: 2,
      ramBytes: 2 * GiB,
      persistent: false,
      userdata: undefined,
      image: "debian",
      sshKeys: [],
      template: true,
      warmPool: 2,
      lifetimeMs: null,
      maxLifetimeMs: null,
      maxVms: undefined,
      network: { mode: "user" },
      dnsServers: [],
    },
  ],
};

describe("parseDaemonConfig defaults", () => {
  test('"config:" with nothing under it means the defaults, as an empty file does', () => {
    assert.deepEqual(parseDaemonConfig("config:\n", "c.yaml"), DEFAULTS);
    assert.deepEqual(parseDaemonConfig("", "c.yaml"), DEFAULTS);
  });

  test("an empty file gives the built-in defaults", () => {
    assert.deepEqual(parseDaemonConfig("", "empty.yaml"), DEFAULTS);
  });

  test("a file of only comments or whitespace gives the defaults", () => {
    assert.deepEqual(parseDaemonConfig("# nothing here\n\n", "c.yaml"), DEFAULTS);
    assert.deepEqual(parseDaemonConfig("   \n", "c.yaml"), DEFAULTS);
  });

  test("an empty config mapping gives the defaults", () => {
    assert.deepEqual(parseDaemonConfig("config: {}\n", "c.yaml"), DEFAULTS);
  });

  test("ksm turns on memory merging across the host's VMs; it must be true or false", () => {
    assert.equal(parseDaemonConfig("config:\n  ksm: true\n", "c.yaml").ksm, true);
    assert.equal(parseDaemonConfig("config:\n  ksm: false\n", "c.yaml").ksm, false);
    assert.match(problemsOf("config:\n  ksm: on\n").join("\n"), /config\.ksm/);
  });

  test("Slicer's insecure_registry lets image pulls use plain HTTP; it must be true or false", () => {
    assert.equal(parseDaemonConfig("config:\n  insecure_registry: true\n", "c.yaml").insecureRegistry, true);
    assert.match(problemsOf("config:\n  insecure_registry: yes-please\n").join("\n"), /insecure_registry/);
  });

  test("the built-in YAML parses to the defaults", () => {
    assert.deepEqual(parseDaemonConfig(DEFAULT_CONFIG_YAML, "defaults"), DEFAULTS);
    assert.deepEqual(loadDaemonConfig(undefined), DEFAULTS);
  });

  test("warm_pool: a count of pooled clones, none when the group has no template, refused when out of range", () => {
    const parsed = parseDaemonConfig(groups("    - name: a\n      warm_pool: 3\n    - name: b\n      warm_pool: 3\n      template: false\n"), "c.yaml");
    assert.deepEqual(
      parsed.hostGroups.map((g) => [g.name, g.template, g.warmPool]),
      [
        ["a", true, 3],
        ["b", false, 0],
      ],
    );
    assert.throws(() => parseDaemonConfig(groups("    - name: a\n      warm_pool: 33\n"), "c.yaml"), /config\.host_groups\[0\]\.warm_pool/);
    assert.throws(() => parseDaemonConfig(groups("    - name: a\n      warm_pool: -1\n"), "c.yaml"), /warm_pool/);
  });

  test("an explicit empty host group list means no groups, not the default one", () => {
    assert.deepEqual(parseDaemonConfig("config:\n  host_groups: []\n", "c.yaml").hostGroups, []);
  });

  test("a group with only a name gets every per-group default", () => {
    const config = parseDaemonConfig(groups("    - name: web\n"), "c.yaml");
    assert.deepEqual(config.hostGroups, [
      {
        name: "web",
        count: 0,
        vcpu: 2,
        ramBytes: 2 * GiB,
        persistent: false,
        userdata: undefined,
        image: "debian",
        sshKeys: [],
        template: true,
        warmPool: 0,
        lifetimeMs: null,
        maxLifetimeMs: null,
        maxVms: undefined,
        network: { mode: "user" },
        dnsServers: [],
      },
    ]);
  });

  test("every setting given is kept", () => {
    const text = `config:
  api:
    bind_address: 0.0.0.0
    port: 9090
    socket: /run/corral.sock
    auth:
      enabled: true
  accel: tcg
  insecure_registry: true
  host_groups:
    - name: web
      count: 3
      vcpu: 4
      ram_mb: 512
      persistent: false
      userdata: "#!/bin/sh\\necho hi\\n"
      image: ubuntu-24.04
      ssh_keys: ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"]
      template: false
      lifetime: 30m
      max_lifetime: 7200
      max_vms: 7
  admission:
    memory_reserve_mb: 2048
    min_free_disk_mb: 100
  health_check:
    interval: 30s
    timeout: 2s
    failures: 3
`;
    assert.deepEqual(parseDaemonConfig(text, "c.yaml"), {
      api: { bindAddress: "0.0.0.0", port: 9090, socket: "/run/corral.sock", authEnabled: true },
      accel: "tcg",
      insecureRegistry: true,
      ksm: false,
      network: { hostIsolation: true, hostAccess: [], portRange: { first: 20000, last: 29999 }, vhost: "auto" },
      admission: { memoryReserveBytes: 2048 * MiB, minFreeDiskBytes: 100 * MiB },
      healthCheck: { intervalMs: 30_000, timeoutMs: 2_000, failures: 3 },
      hostGroups: [
        {
          name: "web",
          count: 3,
          vcpu: 4,
          ramBytes: 512 * MiB,
          persistent: false,
          userdata: "#!/bin/sh\necho hi\n",
          image: "ubuntu-24.04",
          sshKeys: ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"],
          template: false,
          warmPool: 0,
          lifetimeMs: 30 * 60_000,
          maxLifetimeMs: 2 * 3_600_000,
          maxVms: 7,
          network: { mode: "user" },
          dnsServers: [],
        },
      ],
    });
  });

  test("api defaults fill in around the settings given", () => {
    const config = parseDaemonConfig("config:\n  api:\n    port: 0\n", "c.yaml");
    assert.deepEqual(config.api, { bindAddress: "127.0.0.1", port: 0, socket: undefined, authEnabled: false });
    assert.equal(parseDaemonConfig("config:\n  api:\n    auth: {}\n", "c.yaml").api.authEnabled, false);
  });

  test("each accel mode is accepted", () => {
    for (const accel of ["auto", "kvm", "tcg"]) assert.equal(parseDaemonConfig(`config:\n  accel: ${accel}\n`, "c.yaml").accel, accel);
  });
});

describe("parseDaemonConfig lifetimes", () => {
  const lifetimes = (yaml: string): [number | null, number | null] => {
    const group = parseDaemonConfig(groups(`    - name: a\n${yaml}`), "c.yaml").hostGroups[0];
    return [group?.lifetimeMs ?? null, group?.maxLifetimeMs ?? null];
  };

  test("lifetime and max_lifetime are Go durations or seconds; absent means none", () => {
    assert.deepEqual(lifetimes(""), [null, null]);
    assert.deepEqual(lifetimes("      lifetime: 1h30m\n"), [90 * 60_000, null]);
    assert.deepEqual(lifetimes("      lifetime: 600\n      max_lifetime: 48h\n"), [600_000, 48 * 3_600_000]);
    assert.deepEqual(lifetimes("      max_lifetime: 720h\n"), [null, 720 * 3_600_000]);
  });

  test("a bad, zero, negative or too long lifetime is an error naming its path", () => {
    assert.deepEqual(problemsOf(groups("    - name: a\n      lifetime: soon\n")), ['Invalid config.host_groups[0].lifetime "soon": use a duration such as "30s", "500ms" or "2m"']);
    assert.deepEqual(problemsOf(groups("    - name: a\n      lifetime: 0s\n")), ['Invalid config.host_groups[0].lifetime "0s": a lifetime must be at least "1s"']);
    assert.deepEqual(problemsOf(groups("    - name: a\n      max_lifetime: -5\n")), [
      'Invalid config.host_groups[0].max_lifetime -5: give a positive number of seconds or a duration such as "30m"',
    ]);
    assert.deepEqual(problemsOf(groups("    - name: a\n      lifetime: 721h\n")), ['Invalid config.host_groups[0].lifetime "721h": the longest allowed is 720h']);
    assert.deepEqual(problemsOf(groups("    - name: a\n      lifetime: [1]\n")), ["config.host_groups[0].lifetime has the wrong type, got [1]"]);
  });

  test("a default lifetime longer than the group's maximum is an error", () => {
    assert.deepEqual(problemsOf(groups("    - name: a\n      lifetime: 2h\n      max_lifetime: 1h\n")), [
      'config.host_groups[0].lifetime "2h" is longer than its max_lifetime "1h"',
    ]);
  });
});

describe("parseDaemonConfig memory", () => {
  const ramOf = (line: string): number => {
    const [group] = parseDaemonConfig(groups(`    - name: g\n      ${line}\n`), "c.yaml").hostGroups;
    assert.ok(group);
    return group.ramBytes;
  };

  test("ram_gb converts to bytes, fractions included", () => {
    assert.equal(ramOf("ram_gb: 4"), 4 * GiB);
    assert.equal(ramOf("ram_gb: 0.5"), 512 * MiB);
    assert.equal(ramOf("ram_gb: 0.125"), 128 * MiB);
    assert.equal(ramOf("ram_gb: 1.1"), Math.round(1.1 * GiB));
  });

  test("ram_mb converts to bytes", () => {
    assert.equal(ramOf("ram_mb: 128"), 128 * MiB);
    assert.equal(ramOf("ram_mb: 3072"), 3 * GiB);
  });

  test("ram_bytes is taken as is", () => {
    assert.equal(ramOf("ram_bytes: 134217728"), 134217728);
    assert.equal(ramOf("ram_bytes: 1000000000"), 1000000000);
  });

  test("below the minimum is rejected with the limit", () => {
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_gb: 0.1\n")), ["config.host_groups[0].ram_gb must be at least 0.125, got 0.1"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_mb: 64\n")), ["config.host_groups[0].ram_mb must be at least 128, got 64"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_bytes: 1024\n")), ["config.host_groups[0].ram_bytes must be at least 134217728, got 1024"]);
  });

  test("ram_mb must be whole", () => {
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_mb: 512.5\n")), ["config.host_groups[0].ram_mb must be an integer, got 512.5"]);
  });

  test("giving two memory sizes is an error", () => {
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_gb: 1\n      ram_mb: 1024\n")), ["config.host_groups[0] sets ram_gb and ram_mb: give the memory size once"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_mb: 1024\n      ram_bytes: 1073741824\n")), [
      "config.host_groups[0] sets ram_mb and ram_bytes: give the memory size once",
    ]);
  });

  test("giving all three memory sizes names all three", () => {
    assert.deepEqual(problemsOf(groups("    - name: g\n      ram_bytes: 1073741824\n      ram_gb: 1\n      ram_mb: 1024\n")), [
      "config.host_groups[0] sets ram_gb and ram_mb and ram_bytes: give the memory size once",
    ]);
  });
});

describe("parseDaemonConfig persistence", () => {
  const persistentOf = (lines: string): boolean => {
    const [group] = parseDaemonConfig(groups(`    - name: g\n${lines}`), "c.yaml").hostGroups;
    assert.ok(group);
    return group.persistent;
  };

  test("services (count > 0) keep their disk by default", () => {
    assert.equal(persistentOf("      count: 1\n"), true);
    assert.equal(persistentOf("      count: 256\n"), true);
  });

  test("sandbox-only groups (count 0 or absent) do not", () => {
    assert.equal(persistentOf("      count: 0\n"), false);
    assert.equal(persistentOf(""), false);
  });

  test("an explicit setting wins either way", () => {
    assert.equal(persistentOf("      count: 2\n      persistent: false\n"), false);
    assert.equal(persistentOf("      count: 0\n      persistent: true\n"), true);
  });
});

describe("parseDaemonConfig userdata", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-config-test-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a relative userdata_file is found beside the config file, not in the working directory", async () => {
    await writeFile(join(dir, "boot.sh"), "echo beside\n");
    const configFile = join(dir, "corral.yaml");
    await writeFile(configFile, groups("    - name: g\n      userdata_file: boot.sh\n"));
    assert.equal(loadDaemonConfig(configFile).hostGroups[0]?.userdata, "echo beside\n");
  });

  test("userdata inline is kept verbatim", () => {
    const [group] = parseDaemonConfig(groups("    - name: g\n      userdata: |\n        #!/bin/sh\n        echo hi\n"), "c.yaml").hostGroups;
    assert.equal(group?.userdata, "#!/bin/sh\necho hi\n");
  });

  test("userdata_file is read into userdata", async () => {
    const file = join(dir, "user-data.sh");
    await writeFile(file, "#!/bin/sh\napt-get install -y nginx\n");
    const [group] = parseDaemonConfig(groups(`    - name: g\n      userdata_file: ${JSON.stringify(file)}\n`), "c.yaml").hostGroups;
    assert.equal(group?.userdata, "#!/bin/sh\napt-get install -y nginx\n");
  });

  test("a missing userdata_file is an error naming the path", () => {
    const file = join(dir, "missing.sh");
    assert.deepEqual(problemsOf(groups(`    - name: g\n    - name: h\n      userdata_file: ${JSON.stringify(file)}\n`)), [
      `config.host_groups[1].userdata_file cannot be read: ENOENT: no such file or directory, open '${file}'`,
    ]);
  });

  test("a directory as userdata_file is an error", () => {
    assert.deepEqual(problemsOf(groups(`    - name: g\n      userdata_file: ${JSON.stringify(dir)}\n`)), [
      "config.host_groups[0].userdata_file cannot be read: EISDIR: illegal operation on a directory, read",
    ]);
  });

  test("an empty userdata_file name is a schema error", () => {
    assert.deepEqual(problemsOf(groups('    - name: g\n      userdata_file: ""\n')), ['config.host_groups[0].userdata_file must not be empty, got ""']);
  });

  test("userdata and userdata_file together is an error", async () => {
    const file = join(dir, "both.sh");
    await writeFile(file, "echo file\n");
    assert.deepEqual(problemsOf(groups(`    - name: g\n      userdata: echo inline\n      userdata_file: ${JSON.stringify(file)}\n`)), [
      "config.host_groups[0] sets both userdata and userdata_file: give one",
    ]);
  });
});

describe("parseDaemonConfig errors", () => {
  test("a wrong type names its YAML path and the value", () => {
    assert.deepEqual(problemsOf(groups("    - name: a\n    - name: b\n      vcpu: two\n")), ['config.host_groups[1].vcpu must be an integer, got "two"']);
  });

  test("unknown keys are reported at every level with their path", () => {
    assert.deepEqual(problemsOf("config:\n  api:\n    hostname: x\n    auth:\n      enabled: true\n      token: abc\n  colour: red\nextra: 1\n"), [
      "extra is not a known setting",
      "config.colour is not a known setting",
      "config.api.hostname is not a known setting",
      "config.api.auth.token is not a known setting",
    ]);
    assert.deepEqual(problemsOf(groups("    - name: a\n    - name: b\n      cpus: 2\n")), ["config.host_groups[1].cpus is not a known setting"]);
  });

  test("out-of-range numbers quote the limit", () => {
    assert.deepEqual(problemsOf("config:\n  api:\n    port: 70000\n"), ["config.api.port must be at most 65535, got 70000"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      vcpu: 0\n")), ["config.host_groups[0].vcpu must be at least 1, got 0"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      vcpu: 65\n")), ["config.host_groups[0].vcpu must be at most 64, got 65"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      count: -1\n")), ["config.host_groups[0].count must be at least 0, got -1"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      count: 257\n")), ["config.host_groups[0].count must be at most 256, got 257"]);
  });

  test("admission, health checks and max_vms: wrong values name their path", () => {
    assert.deepEqual(problemsOf("config:\n  admission:\n    memory_reserve_mb: -1\n    disk: 3\n"), [
      "config.admission.disk is not a known setting",
      "config.admission.memory_reserve_mb must be at least 0, got -1",
    ]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      max_vms: 0\n")), ["config.host_groups[0].max_vms must be at least 1, got 0"]);
    assert.deepEqual(problemsOf(groups("    - name: g\n      count: 3\n      max_vms: 2\n")), ["config.host_groups[0].max_vms must be at least its count (3 services), got 2"]);
    assert.deepEqual(problemsOf("config:\n  health_check:\n    interval: soon\n"), ['config.health_check.interval "soon": use a duration such as "30s", "500ms" or "2m"']);
    assert.deepEqual(problemsOf("config:\n  health_check:\n    interval: 2s\n    timeout: 5s\n"), ["config.health_check.timeout (5s) must not be longer than its interval (2s)"]);
    assert.deepEqual(problemsOf("config:\n  health_check:\n    failures: 0\n"), ["config.health_check.failures must be at least 1, got 0"]);
    assert.equal(parseDaemonConfig("config:\n  health_check:\n    interval: 0s\n", "c.yaml").healthCheck.intervalMs, 0, "0s turns the checks off");
  });

  test("accel must be one of the modes", () => {
    assert.deepEqual(problemsOf("config:\n  accel: fast\n"), ['config.accel must be one of "auto", "kvm", "tcg", got "fast"']);
  });

  test("names and images are checked against their patterns", () => {
    assert.deepEqual(problemsOf(groups("    - name: Web\n      image: ../etc\n")), [
      'config.host_groups[0].name must be a lower-case letter, then letters, digits and dashes (at most 32), got "Web"',
      "config.host_groups[0].image must be an image name (lower-case letters, digits, '.', '-', '_'), got \"../etc\"",
    ]);
  });

  test("a group needs a name", () => {
    assert.deepEqual(problemsOf(groups("    - vcpu: 2\n")), ["config.host_groups[0].name is required"]);
  });

  test("auth.enabled must be a boolean", () => {
    assert.deepEqual(problemsOf("config:\n  api:\n    auth:\n      enabled: sometimes\n"), ['config.api.auth.enabled must be true or false, got "sometimes"']);
  });

  test("host_groups must be a list", () => {
    assert.deepEqual(problemsOf("config:\n  host_groups:\n    name: sbox\n"), ['config.host_groups must be a list, got {"name":"sbox"}']);
  });

  test("a top-level value that is not a mapping is rejected", () => {
    assert.deepEqual(problemsOf("hello\n"), ['(top level) must be a mapping, got "hello"']);
    assert.deepEqual(problemsOf("- 1\n- 2\n"), ["(top level) must be a mapping, got [1,2]"]);
  });

  test("a YAML file without the config key is rejected", () => {
    assert.deepEqual(problemsOf("host_groups: []\n"), ["config is required", "host_groups is not a known setting"]);
  });

  test("duplicate group names are an error", () => {
    assert.deepEqual(problemsOf(groups("    - name: web\n    - name: db\n    - name: web\n")), ['config.host_groups[2].name repeats the host group name "web"']);
  });

  test("invalid YAML is reported with its first line only", () => {
    const problems = problemsOf("config:\n  accel: [auto\n");
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? "", /^not valid YAML: [^\n]+ at line \d+, column \d+:$/);
  });

  test("YAML with a repeated key is invalid", () => {
    assert.deepEqual(problemsOf("config:\n  accel: kvm\n  accel: tcg\n"), ["not valid YAML: Map keys must be unique at line 3, column 3:"]);
  });

  test("several problems are reported at once", () => {
    const problems = problemsOf(groups("    - name: a\n      vcpu: two\n      ram_mb: 1\n    - name: b\n      shell: bash\n"));
    assert.deepEqual(problems, [
      'config.host_groups[0].vcpu must be an integer, got "two"',
      "config.host_groups[0].ram_mb must be at least 128, got 1",
      "config.host_groups[1].shell is not a known setting",
    ]);
  });

  test("several post-schema problems are reported at once, across groups", () => {
    const problems = problemsOf(
      groups("    - name: a\n      ram_gb: 1\n      ram_mb: 1024\n    - name: a\n      userdata: x\n      userdata_file: /nonexistent/corral-userdata\n"),
    );
    assert.deepEqual(problems, [
      "config.host_groups[0] sets ram_gb and ram_mb: give the memory size once",
      'config.host_groups[1].name repeats the host group name "a"',
      "config.host_groups[1] sets both userdata and userdata_file: give one",
      "config.host_groups[1].userdata_file cannot be read: ENOENT: no such file or directory, open '/nonexistent/corral-userdata'",
    ]);
  });

  test("the source is named in the message", () => {
    assert.throws(() => parseDaemonConfig("config:\n  accel: 1\n", "/etc/corral/config.yaml"), {
      name: "ConfigError",
      message: 'Invalid configuration in /etc/corral/config.yaml:\n  - config.accel must be one of "auto", "kvm", "tcg", got 1',
    });
  });
});

describe("config.network", () => {
  const network = (yaml: string): DaemonConfig["network"] => parseDaemonConfig(`config:\n  network:\n${yaml}`, "c.yaml").network;

  test("host_access entries: protocol (tcp unless udp/), an optional address (IPv6 in brackets), a port or a range", () => {
    const parsed = network('    host_access: ["127.0.0.1:5432", "udp/[::1]:53", "tcp/6379", "8000-8010", "udp/192.0.2.2:5353", "[FD00::2]:22"]\n');
    assert.deepEqual(parsed, {
      hostIsolation: true,
      hostAccess: [
        { protocol: "tcp", address: "127.0.0.1", ports: [5432, 5432] },
        { protocol: "udp", address: "::1", ports: [53, 53] },
        { protocol: "tcp", address: undefined, ports: [6379, 6379] },
        { protocol: "tcp", address: undefined, ports: [8000, 8010] },
        { protocol: "udp", address: "192.0.2.2", ports: [5353, 5353] },
        { protocol: "tcp", address: "fd00::2", ports: [22, 22] },
      ],
      portRange: { first: 20000, last: 29999 },
      vhost: "auto",
    });
    assert.ok(Object.isFrozen(parsed.hostAccess) && Object.isFrozen(parsed.hostAccess[0]));
  });

  test("host_isolation: false turns the wall off on purpose", () => {
    assert.deepEqual(network("    host_isolation: false\n"), { hostIsolation: false, hostAccess: [], portRange: { first: 20000, last: 29999 }, vhost: "auto" });
  });

  test("every bad host_access entry is named by its path, with what is wrong", () => {
    const problems = problemsOf(
      'config:\n  network:\n    host_access: ["localhost:80", "sctp/80", "127.0.0.1:0", "127.0.0.1:70000", "90-80", "::1:53", "[127.0.0.1]:80", "300.1.1.1:80", "tcp/", ""]\n',
    );
    assert.deepEqual(problems, [
      'config.network.host_access[0] must be [tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379"), got "localhost:80"',
      'config.network.host_access[1] must be [tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379"), got "sctp/80"',
      "config.network.host_access[2] names port 0: ports are 1 to 65535",
      "config.network.host_access[3] names port 70000: ports are 1 to 65535",
      "config.network.host_access[4] names the range 90-80: the first port must not be above the last",
      'config.network.host_access[5] must be [tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379"), got "::1:53"',
      'config.network.host_access[6] names "[127.0.0.1]", which is not an IPv4 address or an IPv6 address in brackets',
      'config.network.host_access[7] names "300.1.1.1", which is not an IPv4 address or an IPv6 address in brackets',
      'config.network.host_access[8] must be [tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379"), got "tcp/"',
      'config.network.host_access[9] must be [tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379"), got ""',
    ]);
  });

  test("wrong types and unknown keys name their path", () => {
    assert.match(problemsOf('config:\n  network:\n    host_isolation: "no"\n').join("\n"), /config\.network\.host_isolation/);
    assert.match(problemsOf("config:\n  network:\n    host_access: [5432]\n").join("\n"), /config\.network\.host_access\[0\]/);
    assert.match(problemsOf("config:\n  network:\n    host_acess: []\n").join("\n"), /config\.network.*host_acess/);
  });

  test("allowances with the wall turned off are a contradiction, refused", () => {
    assert.deepEqual(problemsOf('config:\n  network:\n    host_isolation: false\n    host_access: ["tcp/5432"]\n'), [
      "config.network.host_access has no effect with config.network.host_isolation: false (there is no wall to pass through): remove one of them",
    ]);
  });
});

describe("parseDaemonConfig result", () => {
  test("the result is frozen all the way down", () => {
    const config = parseDaemonConfig(groups("    - name: g\n      ssh_keys: [k]\n"), "c.yaml");
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.api));
    assert.ok(Object.isFrozen(config.admission));
    assert.ok(Object.isFrozen(config.healthCheck));
    assert.ok(Object.isFrozen(config.hostGroups));
    assert.ok(Object.isFrozen(config.hostGroups[0]));
    assert.ok(Object.isFrozen(config.hostGroups[0]?.sshKeys));
    assert.throws(() => {
      (config as { accel: string }).accel = "kvm";
    }, TypeError);
    assert.throws(() => {
      (config.hostGroups as unknown as unknown[]).push({});
    }, TypeError);
  });

  test("parsing twice gives independent results", () => {
    const text = groups("    - name: g\n      ssh_keys: [k]\n");
    const a = parseDaemonConfig(text, "c.yaml");
    const b = parseDaemonConfig(text, "c.yaml");
    assert.notEqual(a, b);
    assert.notEqual(a.hostGroups[0]?.sshKeys, b.hostGroups[0]?.sshKeys);
    assert.deepEqual(a, b);
  });
});

describe("loadDaemonConfig", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-config-load-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("reads and parses a file", async () => {
    const file = join(dir, "corral.yaml");
    await writeFile(file, "config:\n  accel: kvm\n");
    assert.equal(loadDaemonConfig(file).accel, "kvm");
  });

  test("a missing file is a ConfigError naming it", () => {
    const file = join(dir, "absent.yaml");
    assert.throws(
      () => loadDaemonConfig(file),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [`cannot read the file: ENOENT: no such file or directory, open '${file}'`]);
        assert.match(err.message, new RegExp(`^Invalid configuration in ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\n`));
        return true;
      },
    );
  });

  test("problems in a file name the file", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, "config:\n  accel: fast\n");
    assert.throws(() => loadDaemonConfig(file), {
      message: `Invalid configuration in ${file}:\n  - config.accel must be one of "auto", "kvm", "tcg", got "fast"`,
    });
  });
});
