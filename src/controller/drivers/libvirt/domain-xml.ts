// A libvirt domain's XML (`virsh dumpxml`) read with a real XML parser into what the controller shows of it:
// its vCPUs and memory, and its disks and NICs in Virtumancer's hardware shape (VmHardware, the fields its
// connector's DiskInfo and NetworkInfo read from the same elements). Pure: XML in, values out.
import { XMLParser } from "fast-xml-parser";
import type { VmHardware } from "../../../protocol/ttstack-agent.ts";

export interface DomainDefinition {
  name: string;
  uuid: string;
  /** libvirt's domain type: "qemu" (emulation), "kvm". */
  type: string;
  /** vCPUs the domain runs with (`<vcpu current=…>`, else its maximum). */
  vcpus: number;
  /** `<memory>`, the most the domain may have, in KiB. */
  memoryKiB: number;
  /** `<currentMemory>`, what it is given now, in KiB (the balloon's target). */
  currentMemoryKiB: number;
  disks: DomainDisk[];
  networks: VmHardware["networks"];
}

/** A disk without its size: libvirt's XML does not carry it (domstats' block.N.capacity does). */
export type DomainDisk = Omit<VmHardware["disks"][number], "size_mib">;

/** One XML element as the parser gives it: attributes under "@_", text under "#text", children by name. */
type Node = { [key: string]: unknown };

const ARRAYS = new Set(["domain.devices.disk", "domain.devices.interface"]);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  textNodeName: "#text",
  parseAttributeValue: false,
  parseTagValue: false,
  // Entities beyond XML's five are not libvirt's: a DOCTYPE is refused below rather than expanded.
  processEntities: true,
  isArray: (_name, path) => ARRAYS.has(String(path)),
});

/** libvirt's memory units as multiples of a KiB (its `unit` attribute; KiB when absent). */
const UNIT_KIB: Record<string, number> = {
  b: 1 / 1024,
  bytes: 1 / 1024,
  k: 1,
  kib: 1,
  kb: 1000 / 1024,
  m: 1024,
  mib: 1024,
  mb: 1e6 / 1024,
  g: 1024 ** 2,
  gib: 1024 ** 2,
  gb: 1e9 / 1024,
  t: 1024 ** 3,
  tib: 1024 ** 3,
  tb: 1e12 / 1024,
};

export class DomainXmlError extends Error {
  override name = "DomainXmlError";
}

/** The domain described by `xml`; a DomainXmlError says what is missing or wrong. */
export function parseDomainXml(xml: string): DomainDefinition {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new DomainXmlError("a domain's XML has no DOCTYPE or entity declarations");
  let doc: Node;
  try {
    doc = parser.parse(xml, true) as Node;
  } catch (err) {
    throw new DomainXmlError(`not well-formed XML: ${(err as Error).message}`);
  }
  const domain = child(doc, "domain");
  if (domain === undefined) throw new DomainXmlError("no <domain> element");
  const name = text(child(domain, "name"));
  if (name === "") throw new DomainXmlError("the domain has no <name>");
  const vcpu = child(domain, "vcpu");
  const maxVcpus = wholeNumber(text(vcpu), "<vcpu>");
  const current = attr(vcpu, "current");
  const memoryKiB = kib(child(domain, "memory"), "<memory>");
  const currentMemory = child(domain, "currentMemory");
  const devices = child(domain, "devices") ?? {};
  return {
    name,
    uuid: text(child(domain, "uuid")),
    type: attr(domain, "type"),
    vcpus: current === "" ? maxVcpus : wholeNumber(current, "<vcpu current>"),
    memoryKiB,
    currentMemoryKiB: currentMemory === undefined ? memoryKiB : kib(currentMemory, "<currentMemory>"),
    disks: children(devices, "disk").map(disk),
    networks: children(devices, "interface").map(nic),
  };
}

/** A disk as Virtumancer's DiskInfo reads it; `path` is the file, the block device, or a network source's name. */
function disk(node: Node): DomainDisk {
  const driver = child(node, "driver");
  const source = child(node, "source");
  const target = child(node, "target");
  const path = attr(source, "file") || attr(source, "dev") || attr(source, "volume") || attr(source, "name") || attr(source, "dir");
  return {
    type: attr(node, "type"),
    device: attr(node, "device") || "disk",
    driver: { driver_name: attr(driver, "name"), type: attr(driver, "type") },
    path,
    target: { dev: attr(target, "dev"), bus: attr(target, "bus") },
  };
}

/**
 * A NIC as Virtumancer's NetworkInfo reads it. `source.mode` is libvirt's `<source mode>` (a macvtap's
 * bridge/vepa/private), else the interface's type; `source.network` the libvirt network it is plugged into.
 */
function nic(node: Node): VmHardware["networks"][number] {
  const type = attr(node, "type");
  const source = child(node, "source");
  const bridge = attr(source, "bridge");
  const network = attr(source, "network");
  const targetDev = attr(child(node, "target"), "dev");
  const out: VmHardware["networks"][number] = {
    type,
    mac: { address: attr(child(node, "mac"), "address") },
    source: { mode: attr(source, "mode") || type, ...(bridge === "" ? {} : { bridge }), ...(network === "" ? {} : { network }) },
    // libvirt's default model for a NIC without <model> is rtl8139 on x86 machines; it writes <model> back in
    // the live XML, so an empty one here means the domain's definition did not say.
    model: { model_type: attr(child(node, "model"), "type") },
  };
  if (targetDev !== "") out.target = { dev: targetDev };
  return out;
}

function child(node: Node | undefined, name: string): Node | undefined {
  const value = node?.[name];
  if (Array.isArray(value)) return asNode(value[0]);
  return asNode(value);
}

function children(node: Node, name: string): Node[] {
  const value = node[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map((item) => asNode(item) ?? {});
}

/** An element that has only text is parsed as a string: give it the object shape too. */
function asNode(value: unknown): Node | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "object") return value as Node;
  return { "#text": String(value) };
}

function attr(node: Node | undefined, name: string): string {
  const value = node?.[`@_${name}`];
  return typeof value === "string" ? value : "";
}

function text(node: Node | undefined): string {
  const value = node?.["#text"];
  return typeof value === "string" ? value.trim() : "";
}

function wholeNumber(value: string, what: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new DomainXmlError(`${what} is not a whole number: ${JSON.stringify(value)}`);
  return Number(value);
}

function kib(node: Node | undefined, what: string): number {
  if (node === undefined) throw new DomainXmlError(`the domain has no ${what}`);
  const unit = (attr(node, "unit") || "KiB").toLowerCase();
  const perUnit = UNIT_KIB[unit];
  if (perUnit === undefined) throw new DomainXmlError(`${what} has an unknown unit ${JSON.stringify(unit)}`);
  const value = text(node);
  if (!/^\d{1,18}$/.test(value)) throw new DomainXmlError(`${what} is not a whole number: ${JSON.stringify(value)}`);
  return Math.floor(Number(value) * perUnit);
}
