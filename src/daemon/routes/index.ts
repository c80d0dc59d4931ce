// Every route set of the daemon, registered in this order.
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { execRoutes } from "./exec.ts";
import { lifecycleRoutes } from "./lifecycle.ts";
import { nodeRoutes } from "./nodes.ts";
import { shellAndForwardRoutes } from "./shell-forward.ts";
import { systemRoutes } from "./system.ts";
import { vmRoutes } from "./vm.ts";

export type RouteSet = (app: DaemonApp, ctx: DaemonContext) => void;

export const ROUTE_SETS: readonly RouteSet[] = [systemRoutes, nodeRoutes, vmRoutes, execRoutes, lifecycleRoutes, shellAndForwardRoutes];
