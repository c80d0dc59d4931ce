// Modal dialogs on the browser's own <dialog>: focus moves in and stays, Escape cancels.
/** @jsxRuntime automatic */
import { useEffect, useId, useRef, type ReactNode } from "react";
import type { ApiError } from "../lib/api.ts";
import { ErrorNote } from "./bits.tsx";

export function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {children}
    </dialog>
  );
}

/** "Delete environment "team"?" with Cancel and a button named for the act ("Delete", "Remove"). */
export function ConfirmDialog(props: {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  busy: boolean;
  error: ApiError | undefined;
  onConfirm: () => void;
  onClose: () => void;
}) {
  return (
    <Modal title={props.title} onClose={props.onClose}>
      <div className="dialog-body">{props.children}</div>
      <ErrorNote error={props.error} />
      <div className="actions">
        {/* biome-ignore lint/a11y/noAutofocus: a confirmation starts on its harmless choice, as modal dialogs should */}
        <button type="button" onClick={props.onClose} autoFocus>
          Cancel
        </button>
        <button type="button" className="danger" onClick={props.onConfirm} disabled={props.busy}>
          {props.busy ? `${props.confirmLabel}…` : props.confirmLabel}
        </button>
      </div>
    </Modal>
  );
}
