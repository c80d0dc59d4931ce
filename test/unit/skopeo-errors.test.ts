// skopeo's failures told in the catalogue's terms, whatever the registry's address holds: a port such as
// 40137 once made a plain-HTTP registry's TLS refusal read as "check the username and password" (CI flake).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { explainSkopeo, registrySource } from "../../src/image/oci/skopeo.ts";
import { parseReference } from "../../src/image/oci/reference.ts";
import { CommandError } from "../../src/util/run.ts";

function failure(port: number, message: string) {
  const source = registrySource(parseReference(`127.0.0.1:${port}/team/tiny:1`), { insecure: false });
  const stderr = `time="2026-12-07T15:40:00Z" level=fatal msg="initializing source docker://127.0.0.1:${port}/team/tiny:1: ${message}"\n`;
  return explainSkopeo(source, new CommandError("skopeo copy", 1, stderr));
}

describe("skopeo's errors", () => {
  test("a plain-HTTP registry asked over HTTPS is unreachable-without-insecure, on any port", () => {
    for (const port of [40137, 40404, 5000, 14013]) {
      const err = failure(port, `pinging container registry 127.0.0.1:${port}: Get "https://127.0.0.1:${port}/v2/": http: server gave HTTP response to HTTPS client`);
      assert.equal(err.code, "registry_unreachable", `port ${port}: ${err.message}`);
      assert.match(err.message, /pass insecure/);
    }
  });

  test("refused credentials and a missing image keep their codes, status codes included", () => {
    assert.equal(failure(40137, "reading manifest 1 in 127.0.0.1:40137/team/tiny: unauthorized: authentication required").code, "registry_auth_failed");
    assert.equal(failure(5000, "invalid status code from registry 401 (Unauthorized)").code, "registry_auth_failed");
    assert.equal(failure(40404, "reading manifest 1 in 127.0.0.1:40404/team/tiny: manifest unknown").code, "image_reference_not_found");
    assert.equal(failure(5000, "invalid status code from registry 404 (Not Found)").code, "image_reference_not_found");
    assert.equal(failure(40137, "pinging container registry 127.0.0.1:40137: dial tcp 127.0.0.1:40137: connect: connection refused").code, "registry_unreachable");
  });
});
