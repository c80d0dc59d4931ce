// The dashboard's composition root: the API client, the one /ws connection, the app.
/** @jsxRuntime automatic */
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./app.tsx";
import { createApiClient, sessionKeyStore } from "./lib/api.ts";
import { LiveConnection } from "./lib/live.ts";
import "./styles.css";

const keys = sessionKeyStore();
const unauthorized = new EventTarget();
const api = createApiClient({ keys, onUnauthorized: () => unauthorized.dispatchEvent(new Event("unauthorized")) });
const live = new LiveConnection(() => api.socketUrl("/ws"));

const root = document.getElementById("root");
if (!root) throw new Error("index.html has no #root element");
createRoot(root).render(
  <StrictMode>
    <App api={api} live={live} keys={keys} unauthorized={unauthorized} />
  </StrictMode>,
);
