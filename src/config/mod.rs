//! The one typed configuration. Every field is a command-line flag and an
//! environment variable `REPLBOX_*`; the defaults live here and nowhere else.
//!
//! `mod.rs` holds `Config` and what is derived from it; `sandbox.rs` its
//! sandbox part (`SandboxConfig`, flattened into it); `languages.rs` the
//! language table.

mod languages;
mod sandbox;

use clap::Parser;
pub use languages::{Language, DEFAULT_LANGUAGES};
pub use sandbox::{AgentTransport, BackendKind, SandboxConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(name = "replbox", version, about = "A self-hosted online IDE and REPL")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "REPLBOX_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Where the session store and other state live.
    #[arg(long, env = "REPLBOX_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The store's database: `postgres://user:password@host:port/db` for
    /// PostgreSQL (several servers share it); unset, SQLite in the data
    /// dir (`replbox.db`). The cookie sessions live in it too.
    #[arg(long, env = "REPLBOX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Seconds without user input before a sandbox expires.
    #[arg(long, env = "REPLBOX_IDLE_TTL_SECS", default_value_t = 30 * 60)]
    pub idle_ttl_secs: u64,

    /// Seconds a sandbox may live at most, busy or not.
    #[arg(long, env = "REPLBOX_MAX_LIFETIME_SECS", default_value_t = 8 * 3600)]
    pub max_lifetime_secs: u64,

    /// Seconds a workspace volume is kept after its sandbox expired.
    #[arg(long, env = "REPLBOX_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub retention_secs: u64,

    /// How often the reaper looks for expired sandboxes, in milliseconds.
    #[arg(long, env = "REPLBOX_REAP_INTERVAL_MS", default_value_t = 1000)]
    pub reap_interval_ms: u64,

    /// This replica's id among servers sharing one store (default: its
    /// advertised address, which is unique among them by necessity).
    #[arg(long, env = "REPLBOX_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// The `host:port` other replicas reach this one at, to forward a
    /// sandbox's requests to it (default: the address it listens on).
    #[arg(long, env = "REPLBOX_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Lifetime of a replica's lease on a sandbox, in seconds: another
    /// replica takes the sandbox over this long after its holder stops
    /// renewing.
    #[arg(long, env = "REPLBOX_LEASE_SECS", default_value_t = 15)]
    pub lease_secs: u64,

    /// How often a replica renews its leases, in seconds.
    #[arg(long, env = "REPLBOX_LEASE_RENEW_SECS", default_value_t = 5)]
    pub lease_renew_secs: u64,

    /// Comma-separated bearer tokens for the REST API (empty: API disabled).
    #[arg(
        long,
        env = "REPLBOX_API_TOKENS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub api_tokens: Vec<String>,

    /// Serve cookies with the Secure flag (behind https).
    #[arg(long, env = "REPLBOX_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Extra origins allowed to open the page's WebSocket, comma-separated
    /// (the server's own origin is always allowed).
    #[arg(
        long,
        env = "REPLBOX_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_origins: Vec<String>,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "REPLBOX_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,

    /// Output bytes kept per job for a tab that reconnects.
    #[arg(long, env = "REPLBOX_REPLAY_BYTES", default_value_t = 256 * 1024)]
    pub replay_bytes: usize,

    /// Languages: `name=extension:command` entries, `{file}` standing for the
    /// entry file. Replaces the default table when given.
    #[arg(long, env = "REPLBOX_LANGUAGES", value_delimiter = ';')]
    pub languages: Vec<String>,

    /// Containers started ahead of need.
    #[arg(long, env = "REPLBOX_WARM_POOL", default_value_t = 4)]
    pub warm_pool: usize,

    /// How long the pool waits after a claim before it starts a replacement,
    /// while it still has a ready container for the next arrival: the new
    /// student's first second (the page, the socket, the first run) does
    /// not share the server's cores with the engine starting a container.
    /// A claim that empties the pool, or finds it empty, starts the refill
    /// at once. At most 10 s. Where sandboxes start on other machines
    /// (Kubernetes with more than one node), 0.
    #[arg(
        long,
        env = "REPLBOX_WARM_POOL_REFILL_DELAY_MS",
        default_value_t = 1000
    )]
    pub warm_pool_refill_delay_ms: u64,

    /// Live sandboxes at most, a Check's two containers included (0: as many
    /// as the machine's memory holds at their full use: memory limit plus
    /// /tmp each, after REPLBOX_HOST_RESERVE_MB).
    #[arg(long, env = "REPLBOX_MAX_SANDBOXES", default_value_t = 0)]
    pub max_sandboxes: usize,

    /// Memory kept for the host (the engine, this server, the kernel) when
    /// the cap on sandboxes is derived, in MiB.
    #[arg(long, env = "REPLBOX_HOST_RESERVE_MB", default_value_t = 1024)]
    pub host_reserve_mb: u64,

    /// Seconds a sandbox must have been idle before it may be expired early
    /// to make room for a waiting one.
    #[arg(long, env = "REPLBOX_EVICT_GRACE_SECS", default_value_t = 300)]
    pub evict_grace_secs: u64,

    /// New browser sessions a client address may open per minute (an IPv6
    /// client's whole /64 counts as one address).
    #[arg(long, env = "REPLBOX_NEW_SESSIONS_PER_MINUTE", default_value_t = 30)]
    pub new_sessions_per_minute: u32,

    /// Wrong sign-ins, class codes and recovery codes a client address may
    /// send per minute; also wrong passwords per teacher name. Past it: 429
    /// with Retry-After.
    #[arg(long, env = "REPLBOX_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub attempts_per_minute: u32,

    /// Checks a student may ask for per minute (one at a time in any case).
    #[arg(long, env = "REPLBOX_CHECKS_PER_MINUTE", default_value_t = 6)]
    pub checks_per_minute: u32,

    /// Password hashes computed at once, each on a blocking thread (0: half
    /// the CPUs, at least one).
    #[arg(long, env = "REPLBOX_PASSWORD_HASHERS", default_value_t = 0)]
    pub password_hashers: usize,

    /// Seconds a connection may take to send a request's headers.
    #[arg(long, env = "REPLBOX_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a connection may sit with no request in flight and no byte
    /// moving before it is closed (a WebSocket is not such a connection).
    #[arg(long, env = "REPLBOX_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Bytes of frames queued for one socket's client at most; past it the
    /// socket stops reading the client's requests until the client reads.
    #[arg(long, env = "REPLBOX_SOCKET_QUEUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub socket_queue_bytes: usize,

    /// Seconds a socket's client may take to receive one frame (a file of
    /// up to 8 MiB, say) before the socket is closed as not reading.
    #[arg(long, env = "REPLBOX_SOCKET_SEND_TIMEOUT_SECS", default_value_t = 60)]
    pub socket_send_timeout_secs: u64,

    /// Seconds a request's body may take to arrive, in all (a stalled body
    /// holds its connection no longer).
    #[arg(long, env = "REPLBOX_BODY_TIMEOUT_SECS", default_value_t = 60)]
    pub body_timeout_secs: u64,

    /// Connections open at once on the whole server (0: half the open-file
    /// limit, which the server raises to its hard limit at start-up, and at
    /// most 4096), so
    /// many clients together cannot take the descriptors the engine, the
    /// store and the workspaces need.
    #[arg(long, env = "REPLBOX_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Connections one client address (an IPv6 /64) may hold open at once,
    /// sockets included; trusted proxies are not limited.
    #[arg(long, env = "REPLBOX_CONNECTIONS_PER_CLIENT", default_value_t = 512)]
    pub connections_per_client: usize,

    /// WebSockets one browser session may hold open at once.
    #[arg(long, env = "REPLBOX_SOCKETS_PER_SESSION", default_value_t = 16)]
    pub sockets_per_session: usize,

    /// Jupyter channels sockets one API token may hold open at once (all
    /// its kernels together).
    #[arg(long, env = "REPLBOX_JUPYTER_SOCKETS_PER_TOKEN", default_value_t = 16)]
    pub jupyter_sockets_per_token: usize,

    /// Reverse proxies in front of the server, comma-separated addresses
    /// or ranges (`127.0.0.1,10.0.0.0/8`). A request from one of them is
    /// counted against the address its X-Forwarded-For names (the nearest
    /// that is not itself such a proxy); from anyone else that header is
    /// ignored, so a client cannot pick its own address.
    #[arg(
        long,
        env = "REPLBOX_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_net
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// A folder of exercises (one folder each with exercise.toml); loaded
    /// at start-up, malformed ones refused in the log.
    #[arg(long, env = "REPLBOX_EXERCISES_DIR")]
    pub exercises_dir: Option<PathBuf>,

    #[command(flatten)]
    pub sandbox: SandboxConfig,
}

/// An address range, or one address (a range of one).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a range like 10.0.0.0/8"))
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["replbox"])
    }
}

impl Config {
    /// What one sandbox may really hold in memory, in MiB: its limit plus
    /// its /tmp (a tmpfs outlives the processes that filled it).
    pub fn sandbox_footprint_mb(&self) -> u64 {
        (self.sandbox.memory_mb.max(0) as u64 + self.sandbox.tmp_mb).max(1)
    }

    /// How many sandboxes the machine's memory holds at their full use:
    /// (MemTotal − REPLBOX_HOST_RESERVE_MB) / footprint, at least 1.
    pub fn safe_sandboxes(&self) -> usize {
        let mem_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(8 * 1024);
        let usable = mem_mb.saturating_sub(self.host_reserve_mb);
        ((usable / self.sandbox_footprint_mb()) as usize).max(1)
    }

    /// The cap on live sandboxes: REPLBOX_MAX_SANDBOXES, or the safe number.
    pub fn max_sandboxes(&self) -> usize {
        if self.max_sandboxes > 0 {
            return self.max_sandboxes;
        }
        self.safe_sandboxes()
    }

    /// Password hashes at once.
    pub fn password_hashers(&self) -> usize {
        if self.password_hashers > 0 {
            return self.password_hashers;
        }
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::default();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.idle_ttl_secs, 1800);
        let langs = c.language_table().unwrap();
        assert_eq!(langs["python"].extension, "py");
        assert_eq!(langs.len(), 4);
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn the_sandbox_cap_counts_memory_and_tmp_at_full_use() {
        let c = Config::default();
        assert_eq!(c.sandbox_footprint_mb(), 512 + 512);
        let mem_mb = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            / 1024;
        let cap = c.max_sandboxes() as u64;
        // Every sandbox at its full use fits beside the host's reserve.
        assert!(
            cap * c.sandbox_footprint_mb() + c.host_reserve_mb
                <= mem_mb.max(c.host_reserve_mb + 1024)
        );
        assert_eq!(cap, ((mem_mb.saturating_sub(1024)) / 1024).max(1));
        let explicit = Config::parse_from(["replbox", "--max-sandboxes", "7"]);
        assert_eq!(explicit.max_sandboxes(), 7);
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let c = Config::parse_from(["replbox", "--trusted-proxies", "127.0.0.1, 10.0.0.0/8,::1"]);
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let err = Config::try_parse_from(["replbox", "--trusted-proxies", "nginx"]).unwrap_err();
        assert!(
            err.to_string().contains("neither an address nor a range"),
            "{err}"
        );
    }
}
