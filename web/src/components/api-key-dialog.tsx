// Asked for when the controller answers 401: the key goes to session storage, for this tab only.
/** @jsxRuntime automatic */
import { useId, useState, type FormEvent } from "react";
import { Modal } from "./dialog.tsx";

export function ApiKeyDialog({ hadKey, onSave }: { hadKey: boolean; onSave: (key: string) => void }) {
  const [key, setKey] = useState("");
  const inputId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (key.trim() !== "") onSave(key.trim());
  };
  return (
    <Modal title="Sign in to this controller" onClose={() => undefined}>
      <form onSubmit={submit} className="stack">
        <p>
          {hadKey ? "The controller refused the API key this tab had." : "This controller needs an API key."} It is kept in this tab's session storage only. The key is in{" "}
          <code>STATE_DIR/auth/controller-api-key</code> on the controller's machine.
        </p>
        <label htmlFor={inputId}>API key</label>
        {/* biome-ignore lint/a11y/noAutofocus: the dialog asks for this one field; focus goes where the user types */}
        <input id={inputId} type="password" autoComplete="off" required value={key} onChange={(e) => setKey(e.target.value)} autoFocus />
        <div className="actions">
          <button type="submit" className="primary">
            Save
          </button>
        </div>
      </form>
    </Modal>
  );
}
