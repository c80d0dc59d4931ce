// What every page needs, built once in main.tsx and handed down by context: the API client, the /ws
// connection, and a counter that moves when the API key changes (so data is fetched again).
/** @jsxRuntime automatic */
import { createContext, useContext } from "react";
import type { ApiClient } from "./api.ts";
import type { LiveConnection } from "./live.ts";

export interface Services {
  api: ApiClient;
  live: LiveConnection;
  /** Changes each time a new API key is entered. */
  keyVersion: number;
}

export const ServicesContext = createContext<Services | null>(null);

export function useServices(): Services {
  const services = useContext(ServicesContext);
  if (!services) throw new Error("useServices needs a ServicesContext provider");
  return services;
}
