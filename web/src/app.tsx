// The page frame (header, navigation, the live connection's status), the API key prompt, and which page
// the URL shows.
/** @jsxRuntime automatic */
import { useEffect, useMemo, useState } from "react";
import { ApiKeyDialog } from "./components/api-key-dialog.tsx";
import type { ApiClient, KeyStore } from "./lib/api.ts";
import { useLiveStatus } from "./lib/hooks.ts";
import type { LiveConnection } from "./lib/live.ts";
import { matchRoute, paths, type Route } from "./lib/routes.ts";
import { Link, usePathname } from "./lib/router.tsx";
import { ServicesContext, type Services } from "./lib/services.tsx";
import { EnvPage } from "./pages/env.tsx";
import { EnvsPage } from "./pages/envs.tsx";
import { HostPage } from "./pages/host.tsx";
import { HostsPage } from "./pages/hosts.tsx";
import { OverviewPage } from "./pages/overview.tsx";
import { VmPage } from "./pages/vm.tsx";

export function App(props: { api: ApiClient; live: LiveConnection; keys: KeyStore; unauthorized: EventTarget }) {
  const { api, live, keys, unauthorized } = props;
  const [keyVersion, setKeyVersion] = useState(0);
  const [needKey, setNeedKey] = useState(false);
  const services: Services = useMemo(() => ({ api, live, keyVersion }), [api, live, keyVersion]);

  useEffect(() => {
    const ask = () => setNeedKey(true);
    unauthorized.addEventListener("unauthorized", ask);
    return () => unauthorized.removeEventListener("unauthorized", ask);
  }, [unauthorized]);

  useEffect(() => {
    live.start();
    return () => live.stop();
  }, [live]);

  const saveKey = (key: string) => {
    keys.set(key);
    setNeedKey(false);
    setKeyVersion((v) => v + 1);
    live.restart();
  };

  return (
    <ServicesContext.Provider value={services}>
      <Shell />
      {needKey && <ApiKeyDialog hadKey={keys.get() !== undefined} onSave={saveKey} />}
    </ServicesContext.Provider>
  );
}

function Shell() {
  const route = matchRoute(usePathname());
  const title = titleOf(route);
  useEffect(() => {
    document.title = `${title} · Corral`;
  }, [title]);
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href="/" className="brand">
          Corral
        </Link>
        <nav aria-label="Main">
          <NavLink href={paths.overview()} current={route.page === "overview"}>
            Overview
          </NavLink>
          <NavLink href={paths.hosts()} current={route.page === "hosts" || route.page === "host"}>
            Hosts
          </NavLink>
          <NavLink href={paths.envs()} current={route.page === "envs" || route.page === "env" || route.page === "vm"}>
            Environments
          </NavLink>
        </nav>
        <LiveIndicator />
      </header>
      <main id="main">
        <Page route={route} />
      </main>
    </>
  );
}

function NavLink({ href, current, children }: { href: string; current: boolean; children: string }) {
  return (
    <Link href={href} aria-current={current ? "page" : undefined}>
      {children}
    </Link>
  );
}

function LiveIndicator() {
  const status = useLiveStatus();
  const text = status === "open" ? "Live" : status === "connecting" ? "Connecting…" : "Offline, retrying";
  return (
    <span className={`live live-${status}`} role="status" title="Live updates from the controller (/ws)">
      <span className="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "overview":
      return <OverviewPage />;
    case "hosts":
      return <HostsPage />;
    case "host":
      return <HostPage key={route.id} id={route.id} />;
    case "envs":
      return <EnvsPage />;
    case "env":
      return <EnvPage key={route.id} id={route.id} />;
    case "vm":
      return <VmPage key={`${route.hostId}/${route.vmName}`} hostId={route.hostId} vmName={route.vmName} />;
    case "not-found":
      return (
        <section>
          <h1>Page not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link href="/">Back to the overview</Link>.
          </p>
        </section>
      );
  }
}

function titleOf(route: Route): string {
  switch (route.page) {
    case "overview":
      return "Overview";
    case "hosts":
      return "Hosts";
    case "host":
      return `Host ${route.id}`;
    case "envs":
      return "Environments";
    case "env":
      return `Environment ${route.id}`;
    case "vm":
      return `VM ${route.vmName}`;
    case "not-found":
      return "Not found";
  }
}
