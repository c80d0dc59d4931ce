// The create-environment form: every field of POST /api/envs (id, owner, SSH keys pasted or from a file,
// lifetime, and per VM image, engine, vCPUs, memory, disk, ports, deny_outgoing).
/** @jsxRuntime automatic */
import { useId, useState, type ChangeEvent, type FormEvent } from "react";
import type { EnvDetail, FleetImage } from "../../../src/protocol/controller.ts";
import { ErrorNote } from "../components/bits.tsx";
import { blankEnvForm, blankVm, buildCreateEnv, type EnvFormValues, type LifetimeUnit, type VmFormValues } from "../lib/env-form.ts";
import { useAction, useResource } from "../lib/hooks.ts";
import { useServices } from "../lib/services.tsx";

/** Each image name once, with how many hosts have it (GET /api/images lists one entry per image and host). */
export function imageHosts(images: readonly FleetImage[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const image of images) counts.set(image.name, (counts.get(image.name) ?? 0) + 1);
  return [...counts.entries()];
}

export function CreateEnvForm({ onCreated, onCancel }: { onCreated: (env: EnvDetail) => void; onCancel: () => void }) {
  const { api } = useServices();
  // A host's images are part of its report: a change is vms-changed for that host.
  const images = useResource<FleetImage[]>("/api/images", { staleOn: (m) => m.type === "hosts-changed" || m.type === "vms-changed" });
  const [values, setValues] = useState<EnvFormValues>(() => blankEnvForm());
  const [invalid, setInvalid] = useState<string | undefined>();
  const action = useAction();
  const imagesId = useId();
  const defaultImage = images.data?.[0]?.name ?? "";

  const set = (patch: Partial<EnvFormValues>) => setValues((v) => ({ ...v, ...patch }));
  const setVm = (index: number, patch: Partial<VmFormValues>) => setValues((v) => ({ ...v, vms: v.vms.map((vm, i) => (i === index ? { ...vm, ...patch } : vm)) }));

  const loadKeys = async (event: ChangeEvent<HTMLInputElement>) => {
    const files = Array.from(event.target.files ?? []);
    const texts = await Promise.all(files.map((f) => f.text()));
    const added = texts.map((t) => t.trim()).filter((t) => t !== "");
    if (added.length > 0) setValues((v) => ({ ...v, sshKeys: [v.sshKeys.trim(), ...added].filter((t) => t !== "").join("\n") }));
    event.target.value = "";
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const withImages = { ...values, vms: values.vms.map((vm) => (vm.image.trim() === "" ? { ...vm, image: defaultImage } : vm)) };
    const built = buildCreateEnv(withImages);
    if (!built.ok) {
      setInvalid(built.error);
      return;
    }
    setInvalid(undefined);
    let created: EnvDetail | undefined;
    if (await action.run(async () => (created = await api.post<EnvDetail>("/api/envs", built.body)))) {
      setValues(blankEnvForm());
      if (created) onCreated(created);
    }
  };

  return (
    <form className="panel form" onSubmit={submit} aria-labelledby="create-env-title" noValidate>
      <h2 id="create-env-title">New environment</h2>
      <div className="fields">
        <div className="field">
          <label htmlFor="env-id">Environment ID</label>
          <input id="env-id" required placeholder="team" pattern="[a-z0-9]([a-z0-9\-]{0,38}[a-z0-9])?" value={values.id} onChange={(e) => set({ id: e.target.value })} />
          <span className="hint">Lower-case letters, digits and dashes; its VMs are ID-1, ID-2, …</span>
        </div>
        <div className="field">
          <label htmlFor="env-owner">Owner</label>
          <input id="env-owner" placeholder="alice" value={values.owner} onChange={(e) => set({ owner: e.target.value })} />
        </div>
        <div className="field field-lifetime">
          <label htmlFor="env-lifetime">Lifetime</label>
          <div className="inline">
            <input id="env-lifetime" type="number" min="1" step="any" required value={values.lifetime} onChange={(e) => set({ lifetime: e.target.value })} />
            <label htmlFor="env-lifetime-unit" className="visually-hidden">
              Time unit
            </label>
            <select id="env-lifetime-unit" value={values.lifetimeUnit} onChange={(e) => set({ lifetimeUnit: e.target.value as LifetimeUnit })}>
              <option value="minutes">minutes</option>
              <option value="hours">hours</option>
              <option value="days">days</option>
            </select>
          </div>
        </div>
      </div>
      <div className="field">
        <label htmlFor="env-ssh-keys">SSH public keys</label>
        <textarea id="env-ssh-keys" rows={3} placeholder="ssh-ed25519 AAAA… you@laptop (one per line)" value={values.sshKeys} onChange={(e) => set({ sshKeys: e.target.value })} />
        <label htmlFor="env-ssh-file" className="file-label">
          Load keys from a file
        </label>
        <input id="env-ssh-file" type="file" accept=".pub,text/plain" multiple onChange={loadKeys} />
      </div>
      <datalist id={imagesId}>
        {imageHosts(images.data ?? []).map(([name, hosts]) => (
          <option key={name} value={name}>
            {`on ${hosts} host${hosts === 1 ? "" : "s"}`}
          </option>
        ))}
      </datalist>
      {values.vms.map((vm, index) => (
        <VmFields
          // biome-ignore lint/suspicious/noArrayIndexKey: a VM row has no identity but its place in the form
          key={index}
          index={index}
          vm={vm}
          imagesList={imagesId}
          defaultImage={defaultImage}
          onChange={(patch) => setVm(index, patch)}
          onRemove={values.vms.length > 1 ? () => set({ vms: values.vms.filter((_, i) => i !== index) }) : undefined}
        />
      ))}
      <button type="button" onClick={() => set({ vms: [...values.vms, blankVm()] })}>
        Add VM
      </button>
      <ErrorNote error={invalid} />
      <ErrorNote error={action.error}>Could not create the environment: </ErrorNote>
      <div className="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="primary" disabled={action.busy}>
          {action.busy ? "Creating… (VMs boot)" : "Create environment"}
        </button>
      </div>
    </form>
  );
}

function VmFields(props: {
  index: number;
  vm: VmFormValues;
  imagesList: string;
  defaultImage: string;
  onChange: (patch: Partial<VmFormValues>) => void;
  onRemove: (() => void) | undefined;
}) {
  const { vm, onChange } = props;
  const id = useId();
  return (
    <fieldset className="vm-fields">
      <legend>VM {props.index + 1}</legend>
      <div className="fields">
        <div className="field">
          <label htmlFor={`${id}-image`}>Image</label>
          <input id={`${id}-image`} list={props.imagesList} placeholder={props.defaultImage || "base"} value={vm.image} onChange={(e) => onChange({ image: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor={`${id}-engine`}>Engine</label>
          <input id={`${id}-engine`} value={vm.engine} onChange={(e) => onChange({ engine: e.target.value })} />
        </div>
        <div className="field narrow">
          <label htmlFor={`${id}-cpu`}>vCPUs</label>
          <input id={`${id}-cpu`} type="number" min="1" max="64" value={vm.cpu} onChange={(e) => onChange({ cpu: e.target.value })} />
        </div>
        <div className="field narrow">
          <label htmlFor={`${id}-mem`}>Memory (MiB)</label>
          <input id={`${id}-mem`} type="number" min="128" step="128" value={vm.mem} onChange={(e) => onChange({ mem: e.target.value })} />
        </div>
        <div className="field narrow">
          <label htmlFor={`${id}-disk`}>Disk (MiB)</label>
          <input id={`${id}-disk`} type="number" min="1024" step="1024" value={vm.disk} onChange={(e) => onChange({ disk: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor={`${id}-ports`}>Ports</label>
          <input id={`${id}-ports`} placeholder="80, 443" value={vm.ports} onChange={(e) => onChange({ ports: e.target.value })} />
        </div>
      </div>
      <div className="inline">
        <input id={`${id}-deny`} type="checkbox" checked={vm.denyOutgoing} onChange={(e) => onChange({ denyOutgoing: e.target.checked })} />
        <label htmlFor={`${id}-deny`}>Deny outgoing traffic</label>
        {props.onRemove && (
          <button type="button" className="small push-right" onClick={props.onRemove}>
            Remove VM {props.index + 1}
          </button>
        )}
      </div>
    </fieldset>
  );
}
