// Hooks shared by the pages: data that follows /ws events, the connection status, a ticking clock.
import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { WsServerMessage } from "../../../src/protocol/controller.ts";
import { ApiError } from "./api.ts";
import type { LiveStatus } from "./live.ts";
import { useServices } from "./services.tsx";

/** The slow fallback refresh, in case an event was lost (the heartbeat is 2 s; this is far slower). */
export const FALLBACK_REFRESH_MS = 15_000;
/** Events often come in bursts (one per VM of an environment): one fetch per burst. */
const DEBOUNCE_MS = 250;

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

export interface ResourceOptions {
  /** Which /ws messages make this data stale. */
  staleOn?: (message: WsServerMessage) => boolean;
  /** Treat the response as text rather than JSON. */
  text?: boolean;
}

/** GET `path` (null: nothing yet), again when a matching event arrives, and every FALLBACK_REFRESH_MS. */
export function useResource<T>(path: string | null, options: ResourceOptions = {}): Resource<T> {
  const { api, live, keyVersion } = useServices();
  const [state, setState] = useState<{ path: string | null; data: T | undefined; error: ApiError | undefined; loading: boolean }>({
    path,
    data: undefined,
    error: undefined,
    loading: path !== null,
  });
  const generation = useRef(0);
  const staleOn = useRef(options.staleOn);
  staleOn.current = options.staleOn;
  const asText = options.text === true;

  const load = useCallback(() => {
    if (path === null) return;
    const mine = ++generation.current;
    setState((s) => (s.path === path ? { ...s, loading: true } : { path, data: undefined, error: undefined, loading: true }));
    const request = asText ? (api.text(path) as Promise<unknown>) : api.get<unknown>(path);
    request.then(
      (data) => mine === generation.current && setState({ path, data: data as T, error: undefined, loading: false }),
      (error: unknown) =>
        mine === generation.current && setState((s) => ({ ...s, path, error: error instanceof ApiError ? error : new ApiError(0, "error", String(error)), loading: false })),
    );
  }, [api, path, asText]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `keyVersion` is not read inside: a new API key reloads what was refused
  useEffect(() => {
    load();
  }, [load, keyVersion]);

  useEffect(() => {
    if (path === null) return;
    let debounce: ReturnType<typeof setTimeout> | undefined;
    const off = live.onMessage((message) => {
      if (!staleOn.current?.(message)) return;
      clearTimeout(debounce);
      debounce = setTimeout(load, DEBOUNCE_MS);
    });
    const every = setInterval(() => {
      if (document.visibilityState !== "hidden") load();
    }, FALLBACK_REFRESH_MS);
    return () => {
      off();
      clearTimeout(debounce);
      clearInterval(every);
    };
  }, [live, load, path]);

  const current = state.path === path;
  return { data: current ? state.data : undefined, error: current ? state.error : undefined, loading: current ? state.loading : true, reload: load };
}

export function useLiveStatus(): LiveStatus {
  const { live } = useServices();
  return useSyncExternalStore(
    (notify) => live.onStatus(notify),
    () => live.status,
    () => "closed",
  );
}

/** The time now, updated every `intervalMs`. */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

/** Runs an action, keeping whether it is busy and its error for the place that started it. */
export function useAction(): { busy: boolean; error: ApiError | undefined; run: (action: () => Promise<unknown>) => Promise<boolean>; clear: () => void } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const run = useCallback(async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
      return true;
    } catch (cause) {
      setError(cause instanceof ApiError ? cause : new ApiError(0, "error", cause instanceof Error ? cause.message : String(cause)));
      return false;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clear: () => setError(undefined) };
}

export const hostsChanged = (m: WsServerMessage): boolean => m.type === "hosts-changed" || m.type === "vms-changed";
export const envsChanged = (m: WsServerMessage): boolean => m.type === "envs-changed" || m.type === "vms-changed";
export const anyChange = (m: WsServerMessage): boolean => m.type === "hosts-changed" || m.type === "vms-changed" || m.type === "envs-changed";
