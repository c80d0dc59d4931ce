// An xterm.js terminal attached to a VM's shell through the controller (Slicer's binary shell frames over
// GET /api/hosts/HOST/vms/NAME/shell): window size on open and on resize, keystrokes as data frames, a
// heartbeat every 20 s.
/** @jsxRuntime automatic */
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "react";
import { encodeFrame, encodeWindowSize, FRAME_TYPE, FrameDecoder, parseShellExit } from "../../../src/protocol/shell.ts";
import { useServices } from "../lib/services.tsx";

const HEARTBEAT_MS = 20_000;

type ShellState = { kind: "connecting" } | { kind: "open" } | { kind: "closed"; reason: string };

export function ShellTerminal({ hostId, vmName, onClose }: { hostId: string; vmName: string; onClose: () => void }) {
  const { api } = useServices();
  const container = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<ShellState>({ kind: "connecting" });
  const [attempt, setAttempt] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `attempt` is not read inside: a new value (Reconnect) opens a new session
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    setState({ kind: "connecting" });
    const term = new Terminal({ cursorBlink: true, fontSize: 13, fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace", scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(element);
    fit.fit();
    const encoder = new TextEncoder();
    const decoder = new FrameDecoder();
    const socket = new WebSocket(api.socketUrl(`/api/hosts/${encodeURIComponent(hostId)}/vms/${encodeURIComponent(vmName)}/shell`));
    socket.binaryType = "arraybuffer";
    const send = (frame: Uint8Array) => socket.readyState === WebSocket.OPEN && socket.send(frame);
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    let exited: string | undefined;

    socket.onopen = () => {
      setState({ kind: "open" });
      send(encodeWindowSize(term.cols, term.rows));
      heartbeat = setInterval(() => send(encodeFrame(FRAME_TYPE.heartbeat)), HEARTBEAT_MS);
      term.focus();
    };
    socket.onmessage = (event) => {
      if (!(event.data instanceof ArrayBuffer)) return;
      for (const frame of decoder.push(new Uint8Array(event.data))) {
        if (frame.type === FRAME_TYPE.data) term.write(new Uint8Array(frame.payload));
        else if (frame.type === FRAME_TYPE.sessionClose || frame.type === FRAME_TYPE.shutdown) exited = "The shell ended";
      }
    };
    socket.onclose = (event) => {
      clearInterval(heartbeat);
      const status = parseShellExit(event.reason);
      const reason = status ? event.reason : event.reason || exited || (event.code === 1000 ? "The shell ended" : `The connection closed (code ${event.code})`);
      setState({ kind: "closed", reason });
    };
    const typed = term.onData((data) => send(encodeFrame(FRAME_TYPE.data, encoder.encode(data))));
    const resized = term.onResize(({ cols, rows }) => send(encodeWindowSize(cols, rows)));
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(element);

    return () => {
      observer.disconnect();
      typed.dispose();
      resized.dispose();
      clearInterval(heartbeat);
      if (socket.readyState === WebSocket.OPEN) send(encodeFrame(FRAME_TYPE.shutdown));
      socket.close();
      term.dispose();
    };
  }, [api, hostId, vmName, attempt]);

  return (
    <div className="terminal-box">
      <div className="terminal-bar">
        <span role="status">{state.kind === "connecting" ? "Connecting to the shell…" : state.kind === "open" ? "Connected" : state.reason}</span>
        <span className="actions">
          {state.kind === "closed" && (
            <button type="button" className="small" onClick={() => setAttempt((n) => n + 1)}>
              Reconnect
            </button>
          )}
          <button type="button" className="small" onClick={onClose}>
            Close terminal
          </button>
        </span>
      </div>
      <div className="terminal" data-testid="terminal" ref={container} />
    </div>
  );
}
