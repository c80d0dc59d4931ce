// The SDK's public face.
export { CorralClient, type CreateOptions, type DaemonInfo, type DescribedNode, type ExecOptions, type NodeFilter, type VmHealth, type VmLogs } from "./daemon-client.ts";
export { CorralApiError, Transport, type ClientOptions } from "./transport.ts";
export { FilesApi, type Download, type DownloadOptions, type Ownership, type UploadOptions, type WatchOptions } from "./files.ts";
export type { FsInfo, UploadResult, WatchEvent, WatchEventType } from "../protocol/files.ts";
export type { BufferedExecResult, ExecFrame } from "../protocol/agent.ts";
export type { CreatedNode, CreateNodeBody, HostGroupInfo, NodeInfo, NodeStat } from "../protocol/slicer.ts";
export { ShellSession, type ShellExit, type ShellOptions } from "./shell.ts";
export { ForwardClosedError, type ListenForwardOptions, type LocalForward } from "./forward.ts";
export { formatListenAddress, parseForwardSpec, type ForwardMapping, type ListenAddress } from "./forward-spec.ts";
export type { TemplateInfoBody as TemplateInfo } from "../protocol/templates-api.ts";
export type { CommitBody, CommitView, ForkBody } from "../protocol/commits-api.ts";
export { ControllerClient, EnvsApi, HostsApi, ttData, type ControllerClientOptions, type EnvRemoval, type HostInfoView } from "./controller-client.ts";
export type { CreateEnv, Env, EnvDetail, EnvState, FleetImage, FleetStatus, FleetVm, Host, HostState, HostVm, RegisterHost, VmAction, VmSpec } from "../protocol/controller.ts";
export type { VmHardware } from "../protocol/ttstack-agent.ts";
export { ImagesApi, type ImageProgress, type LongImageOptions } from "./images.ts";
export type { ImageDetailBody as ImageDetail, ImportedImage, PruneResultBody as PruneResult, PullBody } from "../protocol/images-api.ts";
export { packBuildContext, type BuildImageOptions } from "./image-build.ts";
export type { BuildEvent } from "../protocol/image-build.ts";
