// A missing image is image_not_found with a message that says how to get it: the built-in recipes by name.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ImageStore } from "../../src/image/image-store.ts";

describe("ImageStore.resolve of a missing image", () => {
  const dir = mkdtempSync(join(tmpdir(), "corral-images-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ImageStore(dir);

  test("the default image names the command that builds it", async () => {
    await assert.rejects(store.resolve("debian"), { code: "image_not_found", message: /^Image "debian" does not exist: build it with "corral image build debian"/ });
    await assert.rejects(store.resolve("base"), { code: "image_not_found", message: /"corral image build base"/ });
  });

  test("any other name points at building or importing it", async () => {
    await assert.rejects(store.resolve("my-app"), { code: "image_not_found", message: /^Image "my-app" does not exist: build or import it first/ });
  });
});
