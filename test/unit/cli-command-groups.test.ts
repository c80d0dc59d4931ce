// The CLI loads only the modules a command needs (src/cli/command-groups.ts). Its tables name the commands each
// module defines; here they are checked against what the modules really register, so that a command moved or
// added without its table entry is caught (it would still run, but `corral vm list` would load everything).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Command } from "commander";
import { GROUPS, registerCommandsFor, VM_OWN, VM_PARTS } from "../../src/cli/command-groups.ts";

function namesOf(command: Command): string[] {
  return command.commands.flatMap((c) => [c.name(), ...c.aliases()]).sort();
}

function vmOf(program: Command): Command {
  const vm = program.commands.find((c) => c.name() === "vm");
  assert.ok(vm, "the vm group is registered");
  return vm;
}

describe("the CLI's command tables", () => {
  test("every top-level group registers the names its entry lists, and all of them make up `corral --help`", async () => {
    const all = new Command();
    await registerCommandsFor(all, []);
    assert.deepEqual(namesOf(all), GROUPS.flatMap(([names]) => names).sort());
    for (const [names] of GROUPS) {
      const program = new Command();
      await registerCommandsFor(program, [names[0] as string, "--help"]);
      for (const name of names) assert.ok(namesOf(program).includes(name), `${name} is registered by its own entry`);
    }
  });

  test("vm-commands.ts defines exactly VM_OWN, and each part exactly the subcommands its entry lists", async () => {
    const own = new Command();
    await registerCommandsFor(own, ["vm", "list"]);
    assert.deepEqual(namesOf(vmOf(own)), [...VM_OWN].sort());
    for (const [subcommands] of VM_PARTS) {
      const program = new Command();
      await registerCommandsFor(program, ["vm", subcommands[0] as string]);
      const added = namesOf(vmOf(program)).filter((name) => !VM_OWN.includes(name));
      assert.deepEqual(added, [...subcommands].sort(), `the part for ${subcommands.join(", ")}`);
    }
  });

  test("--version registers nothing; an unknown command registers everything (so commander can suggest)", async () => {
    const version = new Command();
    await registerCommandsFor(version, ["--version"]);
    assert.deepEqual(version.commands, []);
    const unknown = new Command();
    await registerCommandsFor(unknown, ["vmx"]);
    assert.ok(namesOf(unknown).includes("vm") && namesOf(unknown).includes("service"));
  });
});
