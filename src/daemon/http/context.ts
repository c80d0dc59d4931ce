// What the routes are given: the services they call and facts about this daemon.
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { AccelVerdict } from "../../engine/index.ts";
import type { ImageCatalogue, ImageStore, OciImports } from "../../image/index.ts";
import type { HostIsolation } from "../../net/index.ts";
import type { DaemonMetrics } from "../metrics.ts";
import type { Secrets } from "../secrets/index.ts";
import type { TemplateManager } from "../templates/template-manager.ts";
import type { VmManager } from "../vm/vm-manager.ts";

export interface DaemonContext {
  manager: VmManager;
  secrets: Secrets;
  images: ImageStore;
  /** Every image version with its sizes and users; removal and pruning. */
  catalogue: ImageCatalogue;
  /** Images from OCI archives and registries. */
  imports: OciImports;
  accel: AccelVerdict;
  version: string;
  gitCommit: string;
  metrics: DaemonMetrics;
  templates: TemplateManager;
  /** The wall between guests and this host's services. */
  isolation: HostIsolation;
  stateDir: string;
  /** This host's id for fleet controllers (see host-identity.ts). */
  hostId: string;
}

export type DaemonApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;
