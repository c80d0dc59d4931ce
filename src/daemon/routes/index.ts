// Every route set of the daemon, registered in this order.
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { commitRoutes } from "./commits.ts";
import { execRoutes } from "./exec.ts";
import { backgroundExecRoutes } from "./exec-background.ts";
import { fileRoutes } from "./files.ts";
import { fsRoutes } from "./fs.ts";
import { imageRoutes } from "./images.ts";
import { imageBuildRoutes } from "./image-build.ts";
import { lifecycleRoutes } from "./lifecycle.ts";
import { metricsRoutes } from "./metrics.ts";
import { nodeRoutes } from "./nodes.ts";
import { secretRoutes } from "./secrets.ts";
import { statsRoutes } from "./stats.ts";
import { shellAndForwardRoutes } from "./shell-forward.ts";
import { systemRoutes } from "./system.ts";
import { tagRoutes } from "./tags.ts";
import { templateRoutes } from "./templates.ts";
import { ttstackAgentRoutes } from "./ttstack-agent.ts";
import { vmRoutes } from "./vm.ts";

export type RouteSet = (app: DaemonApp, ctx: DaemonContext) => void;

export const ROUTE_SETS: readonly RouteSet[] = [
  metricsRoutes,
  systemRoutes,
  nodeRoutes,
  // /vm/commits... are static paths beside /vm/:hostname (the router prefers static segments).
  commitRoutes,
  vmRoutes,
  execRoutes,
  backgroundExecRoutes,
  lifecycleRoutes,
  tagRoutes,
  statsRoutes,
  secretRoutes,
  fileRoutes,
  fsRoutes,
  shellAndForwardRoutes,
  templateRoutes,
  imageRoutes,
  imageBuildRoutes,
];

/** Route sets that speak TTstack's wire (its envelope on every answer: src/http/wire.ts). */
export const TTSTACK_ROUTE_SETS: readonly RouteSet[] = [ttstackAgentRoutes];
