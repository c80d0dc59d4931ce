// Secrets, as the routes see them: kept by the store, delivered to every VM by the delivery (at each VM's
// agent-ready step, and live after each change). Values are never logged and never returned.
import { join } from "node:path";
import type { SecretInfo } from "../../protocol/secrets.ts";
import type { Logger } from "../../util/log.ts";
import type { VmManager } from "../vm/vm-manager.ts";
import { SecretDelivery } from "./secret-delivery.ts";
import { SecretStore, secretInfo, type SecretChange } from "./secret-store.ts";

export type { SecretChange } from "./secret-store.ts";

/** Where the daemon keeps them: STATE_DIR/secrets (0700), one 0600 file each. */
export function secretsDir(stateDir: string): string {
  return join(stateDir, "secrets");
}

export class Secrets {
  private constructor(
    private readonly store: SecretStore,
    private readonly delivery: SecretDelivery,
  ) {}

  /** Opens the store and makes every VM get the secrets whenever its agent becomes ready. */
  static async open(stateDir: string, vms: Pick<VmManager, "readyAgents" | "onAgentReady">, log: Logger): Promise<Secrets> {
    const store = await SecretStore.open(secretsDir(stateDir), log);
    const delivery = new SecretDelivery(store, vms, log);
    vms.onAgentReady(delivery.deliverOnReady);
    return new Secrets(store, delivery);
  }

  list(): SecretInfo[] {
    return this.store.list().map(secretInfo);
  }

  async create(name: string, fields: Required<SecretChange>): Promise<SecretInfo> {
    const header = await this.store.create(name, fields);
    this.delivery.pushToRunningVms();
    return secretInfo(header);
  }

  async update(name: string, change: SecretChange): Promise<SecretInfo> {
    const header = await this.store.update(name, change);
    this.delivery.pushToRunningVms();
    return secretInfo(header);
  }

  async remove(name: string): Promise<void> {
    await this.store.remove(name);
    this.delivery.pushToRunningVms();
  }
}
