// The dashboard's URLs and what each shows. Pure: the router component and the tests share it.

export type Route =
  | { page: "overview" }
  | { page: "hosts" }
  | { page: "host"; id: string }
  | { page: "envs" }
  | { page: "env"; id: string }
  | { page: "vm"; hostId: string; vmName: string }
  | { page: "not-found"; path: string };

export function matchRoute(pathname: string): Route {
  const parts = pathname
    .split("/")
    .filter((p) => p !== "")
    .map((p) => safeDecode(p));
  const [first, second, third] = parts;
  if (parts.length === 0) return { page: "overview" };
  if (first === "hosts" && parts.length === 1) return { page: "hosts" };
  if (first === "hosts" && parts.length === 2 && second) return { page: "host", id: second };
  if (first === "envs" && parts.length === 1) return { page: "envs" };
  if (first === "envs" && parts.length === 2 && second) return { page: "env", id: second };
  if (first === "vms" && parts.length === 3 && second && third) return { page: "vm", hostId: second, vmName: third };
  return { page: "not-found", path: pathname };
}

export const paths = {
  overview: () => "/",
  hosts: () => "/hosts",
  host: (id: string) => `/hosts/${encodeURIComponent(id)}`,
  envs: () => "/envs",
  env: (id: string) => `/envs/${encodeURIComponent(id)}`,
  vm: (hostId: string, vmName: string) => `/vms/${encodeURIComponent(hostId)}/${encodeURIComponent(vmName)}`,
};

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
