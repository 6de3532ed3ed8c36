//! How sandboxes are made: the part of [`Config`] that the sandbox layer
//! takes (flattened into it: the same flags and variables).

use super::Config;
use clap::Args;
use std::path::PathBuf;
/// How sandboxes are made: the engine, the image and the limits.
#[derive(Debug, Clone, Args)]
pub struct SandboxConfig {
    /// Where sandboxes run: `docker` (the engine at REPLBOX_DOCKER_SOCKET)
    /// or `kubernetes` (pods in REPLBOX_KUBE_NAMESPACE, through the
    /// in-cluster service account or $KUBECONFIG; docs/kubernetes.md).
    #[arg(long, env = "REPLBOX_BACKEND", value_enum, default_value = "docker")]
    pub backend: BackendKind,

    /// Kubernetes: the namespace of the sandbox pods and their workspace
    /// claims.
    #[arg(
        long,
        env = "REPLBOX_KUBE_NAMESPACE",
        default_value = "replbox-sandboxes"
    )]
    pub kube_namespace: String,

    /// Kubernetes: the image holding the static agent at `/agent` (FROM
    /// scratch), mounted read-only into every pod as an image volume.
    #[arg(
        long,
        env = "REPLBOX_KUBE_AGENT_IMAGE",
        default_value = "replbox-agent:latest"
    )]
    pub kube_agent_image: String,

    /// Kubernetes: the StorageClass of workspace claims (unset: the
    /// cluster's default). Its driver must enforce sizes: the claim asks
    /// for REPLBOX_WORKSPACE_QUOTA_MB.
    #[arg(long, env = "REPLBOX_KUBE_STORAGE_CLASS")]
    pub kube_storage_class: Option<String>,

    /// Kubernetes: the RuntimeClass of sandbox pods (`gvisor`, say); unset:
    /// the cluster's default runtime.
    #[arg(long, env = "REPLBOX_KUBE_RUNTIME_CLASS")]
    pub kube_runtime_class: Option<String>,

    /// Kubernetes: the pull policy of the sandbox and agent images
    /// (`Never` for images imported on the nodes, as on the test cluster).
    #[arg(long, env = "REPLBOX_KUBE_PULL_POLICY", default_value = "IfNotPresent")]
    pub kube_pull_policy: String,

    /// Kubernetes: the node disk a sandbox pod may use, in MiB: its
    /// container log (the runtime logs what the agent writes to stdout)
    /// and writable layer. Past it the kubelet evicts that pod alone.
    #[arg(long, env = "REPLBOX_KUBE_EPHEMERAL_MB", default_value_t = 1024)]
    pub kube_ephemeral_mb: u64,

    /// Kubernetes: how long a new pod may take to run (scheduling, volume,
    /// image), in seconds.
    #[arg(long, env = "REPLBOX_KUBE_START_TIMEOUT_S", default_value_t = 120)]
    pub kube_start_timeout_s: u64,

    /// The Docker engine's socket.
    #[arg(
        long,
        env = "REPLBOX_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: String,

    /// The default sandbox image.
    #[arg(long, env = "REPLBOX_IMAGE", default_value = "replbox-sandbox:latest")]
    pub image: String,

    /// Images the API may ask for by `imageId`, comma-separated (the default
    /// image is always allowed).
    #[arg(
        long,
        env = "REPLBOX_ALLOWED_IMAGES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_images: Vec<String>,

    /// The static agent binary bind-mounted into every container.
    #[arg(
        long,
        env = "REPLBOX_AGENT_PATH",
        default_value = "target/x86_64-unknown-linux-gnu/release/replbox-agent"
    )]
    pub agent_path: PathBuf,

    /// uid:gid the agent and the user's processes run as.
    #[arg(long, env = "REPLBOX_SANDBOX_USER", default_value = "1000:1000")]
    pub user: String,

    /// Memory limit per sandbox, in MiB (no extra swap).
    #[arg(long, env = "REPLBOX_MEMORY_MB", default_value_t = 512)]
    pub memory_mb: i64,

    /// CPU quota per sandbox, in CPUs.
    #[arg(long, env = "REPLBOX_CPUS", default_value_t = 1.0)]
    pub cpus: f64,

    /// Processes (and threads) per sandbox.
    #[arg(long, env = "REPLBOX_PIDS_LIMIT", default_value_t = 256)]
    pub pids_limit: i64,

    /// Open files per process.
    #[arg(long, env = "REPLBOX_NOFILE", default_value_t = 1024)]
    pub nofile: i64,

    /// Size of the tmpfs at /tmp, in MiB.
    #[arg(long, env = "REPLBOX_TMP_MB", default_value_t = 512)]
    pub tmp_mb: u64,

    /// The engine's runtime for every sandbox (`runsc`: gVisor, registered
    /// with the engine by scripts/ensure-runsc.sh); unset: the engine's
    /// default (runc).
    #[arg(long, env = "REPLBOX_RUNTIME")]
    pub runtime: Option<String>,

    /// Docker network mode for sandboxes.
    #[arg(long, env = "REPLBOX_NETWORK", default_value = "none")]
    pub network: String,

    /// Mount the root filesystem read-only.
    #[arg(long, env = "REPLBOX_READONLY_ROOT", default_value_t = true, action = clap::ArgAction::Set)]
    pub readonly_root: bool,

    /// Wall-time limit of a job unless the caller asks for another, in ms
    /// (0: none for interactive jobs).
    #[arg(long, env = "REPLBOX_JOB_TIMEOUT_MS", default_value_t = 0)]
    pub job_timeout_ms: u64,

    /// Output bytes a job may write before it is stopped.
    #[arg(long, env = "REPLBOX_JOB_OUTPUT_LIMIT", default_value_t = 256 * 1024 * 1024)]
    pub job_output_limit: u64,

    /// Disk quota per workspace, in MiB (0: none). Needs root and
    /// e2fsprogs: each workspace is then a loop-mounted ext4 image that size.
    #[arg(long, env = "REPLBOX_WORKSPACE_QUOTA_MB", default_value_t = 1024)]
    pub workspace_quota_mb: u64,

    /// Disk all workspace images may take together, in MiB (0: 90% of the
    /// filesystem holding REPLBOX_WORKSPACE_ROOT). Past it no new workspace
    /// is made (507 `disk_full`); existing ones keep their own quota.
    #[arg(long, env = "REPLBOX_DISK_BUDGET_MB", default_value_t = 0)]
    pub disk_budget_mb: u64,

    /// Where the workspaces' images and mounts live (with quotas on).
    #[arg(
        long,
        env = "REPLBOX_WORKSPACE_ROOT",
        default_value = "/var/lib/replbox/workspaces"
    )]
    pub workspace_root: PathBuf,

    /// The seccomp profile of every sandbox: `builtin` (docker/seccomp.json,
    /// narrower than the engine's default), `engine-default`, or the path of
    /// a JSON profile.
    #[arg(long, env = "REPLBOX_SECCOMP_PROFILE", default_value = "builtin")]
    pub seccomp_profile: String,

    /// Prefix of container and volume names (tests use their own).
    #[arg(long, env = "REPLBOX_NAME_PREFIX", default_value = "replbox")]
    pub name_prefix: String,

    /// How the server and a sandbox's agent talk: `socket` (a unix socket
    /// in a host directory bind-mounted into the container: off the
    /// engine's copy path, and it outlives an engine restart), `attach`
    /// (the container's attached stdio through the engine: for an engine
    /// on another host, or a runtime that cannot pass a unix socket through
    /// a bind mount), or `auto`: socket when REPLBOX_RUNTIME_DIR can be
    /// made, attach when not.
    #[arg(
        long,
        env = "REPLBOX_AGENT_TRANSPORT",
        value_enum,
        default_value = "auto"
    )]
    pub agent_transport: AgentTransport,

    /// Where the server keeps the agents' socket directories (`sockets/`,
    /// one per sandbox, owned by root, read-only in the container).
    #[arg(long, env = "REPLBOX_RUNTIME_DIR", default_value = "/run/replbox")]
    pub runtime_dir: PathBuf,

    /// This deployment's id, the `replbox.deployment` label on every
    /// container and volume it makes: start-up recovery removes only what
    /// carries its own id, so several servers (staging beside production)
    /// can share one engine. Unset: the id kept in `<data dir>/deployment`,
    /// made at random on the first start (letters, digits, `.`, `_`, `-`;
    /// at most 64).
    #[arg(long, env = "REPLBOX_DEPLOYMENT")]
    pub deployment: Option<String>,
}

/// Where sandboxes run (`REPLBOX_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Docker,
    Kubernetes,
}

/// How the server and a sandbox's agent talk (`REPLBOX_AGENT_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentTransport {
    Auto,
    Socket,
    Attach,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Config::default().sandbox
    }
}
