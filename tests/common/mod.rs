//! Shared set-up for the integration tests: a real Docker engine, the
//! default image, and the static agent, each checked with a clear message.
#![allow(dead_code)]

use replbox::config::{Config, SandboxConfig};
use replbox::sandbox::Sandboxes;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub const AGENT: &str = "target/x86_64-unknown-linux-gnu/release/replbox-agent";

/// A config whose containers and volumes carry a prefix of this test's own.
pub fn sandbox_config() -> SandboxConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let agent = root.join(AGENT);
    assert!(
        agent.exists(),
        "the static agent is missing at {}: run `make agent` (or `make test`, which builds it)",
        agent.display()
    );
    SandboxConfig {
        agent_path: agent,
        name_prefix: format!("rbt-{:08x}", rand::random::<u32>()),
        ..SandboxConfig::default()
    }
}

/// Whether these tests run every sandbox under gVisor (`REPLBOX_RUNTIME=runsc`,
/// `make test-gvisor`): where it differs from runc, the tests assert what
/// gVisor does (README, "Running with gVisor").
pub fn gvisor() -> bool {
    SandboxConfig::default().runtime.as_deref() == Some("runsc")
}

pub fn config() -> Config {
    Config {
        sandbox: sandbox_config(),
        ..Config::default()
    }
}

/// The engine, or a failure that says how to start it.
pub async fn engine(config: SandboxConfig) -> Sandboxes {
    let sandboxes = Sandboxes::new(config.clone()).expect("docker client");
    if sandboxes.ping().await.is_err() {
        panic!(
            "no Docker engine answers at {}. Start one: `make docker` (or `sudo dockerd --bridge=none --iptables=false --ip-forward=false &`)",
            config.docker_socket
        );
    }
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", &config.image])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "the sandbox image {} is missing: run `make image`",
        config.image
    );
    sandboxes
}

/// Removes every container and volume carrying this test's prefix.
pub async fn cleanup(sandboxes: &Sandboxes) {
    for c in sandboxes.list().await.unwrap_or_default() {
        let _ = sandboxes.remove(&c.id).await;
    }
    for v in sandboxes.list_volumes().await.unwrap_or_default() {
        let _ = sandboxes.remove_volume(&v.name).await;
    }
    // A workspace being made when the server stopped finishes a moment
    // later: removed until none of this test's is left on disk.
    let root = sandboxes.config().workspace_root.clone();
    let prefix = format!("{}-", sandboxes.config().name_prefix);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        sandboxes
            .remove_orphan_workspaces(&Default::default())
            .await;
        let left: Vec<String> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workspaces left in {}: {left:?}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One shell job's stdout, stderr and exit code, through a sandbox's agent.
pub async fn job(h: &replbox::sandbox::SandboxHandle, line: &str) -> (String, String, Option<i32>) {
    let out = h
        .spawn(replbox_protocol::JobSpec::shell(line))
        .await
        .expect("spawn a job")
        .collect()
        .await
        .expect("the job's output");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.exit.and_then(|e| e.code),
    )
}

/// Every async test runs under a timeout.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"))
}

// ---------------------------------------------------------------------------
// The real app on 127.0.0.1:0, real HTTP and WebSocket clients.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), replbox::ServeError>>>,
}

/// A config for a server test: its own data dir, prefix and a fast reaper.
pub fn server_config(data_dir: &std::path::Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        api_tokens: vec!["test-token".into(), "other-token".into()],
        reap_interval_ms: 200,
        warm_pool: 0,
        new_sessions_per_minute: 10_000,
        ..config()
    }
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(replbox::serve(config.clone(), listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            config,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A server running elsewhere (another process) at `addr`.
    pub fn external(addr: SocketAddr, config: Config) -> Self {
        TestServer {
            addr,
            config,
            stop: None,
            task: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A request to the REST API as `token` (`None`: no credentials).
    pub fn api_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let req = reqwest::Client::new().request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// A request to the REST API with the tests' token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api_as(Some("test-token"), method, path)
    }

    /// A one-shot run of `print(1)` the server must refuse with 503: the
    /// answer's headers and its JSON.
    pub async fn refused_run(&self) -> (reqwest::header::HeaderMap, Value) {
        let r = self
            .api(reqwest::Method::POST, "/api/v1/run")
            .json(&serde_json::json!({"language": "python", "code": "print(1)"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        (r.headers().clone(), r.json().await.unwrap())
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("server did not shut down within 20 s")
                .expect("server task")
                .expect("server result");
        }
    }

    pub async fn sandboxes(&self) -> Sandboxes {
        Sandboxes::new(self.config.sandbox.clone()).unwrap()
    }
}

/// A browser: a cookie jar and an HTTP client.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        Browser { client, jar }
    }

    /// Opens the page (which gives the browser its session cookie).
    pub async fn visit(&self, server: &TestServer) {
        let resp = self.client.get(server.url("/")).send().await.unwrap();
        assert!(resp.status().is_success(), "GET / gave {}", resp.status());
    }

    pub fn cookie(&self, server: &TestServer) -> Option<String> {
        use reqwest::cookie::CookieStore;
        self.jar
            .cookies(&server.url("/").parse().unwrap())
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The page's socket, with the cookie and the server's own Origin.
    pub async fn socket(&self, server: &TestServer, query: &str) -> Ws {
        let mut req = server
            .ws_url(&format!("/ws{query}"))
            .into_client_request()
            .unwrap();
        if let Some(cookie) = self.cookie(server) {
            req.headers_mut().insert("cookie", cookie.parse().unwrap());
        }
        req.headers_mut()
            .insert("origin", format!("http://{}", server.addr).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("socket opens");
        Ws { ws }
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a socket received.
#[derive(Debug)]
pub enum Got {
    Json(Value),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> Got {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("no frame within 60 s");
            match msg {
                Some(Ok(Message::Text(t))) => return Got::Json(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Binary(b))) => return Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(f))) => return Got::Closed(f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Got::Closed(None),
            }
        }
    }

    /// The next JSON frame (binary frames are skipped).
    pub async fn json(&mut self) -> Value {
        loop {
            match self.recv().await {
                Got::Json(v) => return v,
                Got::Binary(_) => continue,
                Got::Closed(code) => panic!("socket closed ({code:?}) while waiting for a frame"),
            }
        }
    }

    /// Waits for a JSON frame of this type, returning it.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == kind {
                return v;
            }
            if v["type"] == "error" && kind != "error" {
                panic!("error frame while waiting for {kind}: {v}");
            }
        }
    }

    /// Runs a request and gathers its output until its exit frame.
    pub async fn run(&mut self, mut req: Value) -> (String, Value) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let reference = format!(
            "run-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        req["type"] = "run".into();
        req["ref"] = reference.clone().into();
        self.send(req).await;
        // The started frame of this run (other jobs of the session may start too).
        let job = loop {
            let v = self.until("started").await;
            if v["ref"] == reference.as_str() {
                break v["job"].as_u64().unwrap();
            }
        };
        self.collect(job).await
    }

    /// Gathers a job's JSON output until its exit (or failed) frame.
    pub async fn collect(&mut self, job: u64) -> (String, Value) {
        let mut out = String::new();
        loop {
            let v = self.json().await;
            if v["job"].as_u64() != Some(job) {
                continue;
            }
            match v["type"].as_str().unwrap() {
                "output" => out.push_str(v["data"].as_str().unwrap()),
                "exit" | "failed" => return (out, v),
                _ => {}
            }
        }
    }
}

/// The server binary as its own process (so it can be signalled), with
/// this config's data dir, prefix and agent; returns it and its address.
pub fn spawn_server(
    config: &Config,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, TestServer) {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replbox"));
    cmd.env("REPLBOX_ADDR", "127.0.0.1:0")
        .env("REPLBOX_DATA_DIR", &config.data_dir)
        .env("REPLBOX_NAME_PREFIX", &config.sandbox.name_prefix)
        .env("REPLBOX_AGENT_PATH", &config.sandbox.agent_path)
        .env("REPLBOX_API_TOKENS", "test-token")
        .stdout(std::process::Stdio::piped());
    if let Some(d) = &config.sandbox.deployment {
        cmd.env("REPLBOX_DEPLOYMENT", d);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("serving on http://127.0.0.1:"), "{line}");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (child, TestServer::external(addr, config.clone()))
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends a signal to a child process.
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill on a child we own.
    unsafe { libc_kill(child.id() as i32, sig) };
}

/// Sends a request and reads its JSON body, whatever the status.
pub async fn json_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// An IPv4 socket address as /proc/net/tcp writes it.
fn proc_net_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            format!("{d:02X}{c:02X}{b:02X}{a:02X}:{:04X}", v4.port())
        }
        SocketAddr::V6(_) => panic!("an IPv6 connection in a test: {a}"),
    }
}

/// Whether the server has closed its end of the connection from `client`
/// to `server` (the server is in this network namespace): its socket has
/// left ESTABLISHED (a FIN sent, queued behind data the client has not
/// read) or is gone (a reset). Seen in /proc/net/tcp, without reading.
pub fn server_closed(client: SocketAddr, server: SocketAddr) -> bool {
    let (local, remote) = (proc_net_addr(server), proc_net_addr(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let state = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f[3].to_string())
    });
    // 01: ESTABLISHED.
    state.as_deref() != Some("01")
}

/// Waits (polling every 100 ms, `secs` at most) until the server has
/// closed this connection on its own, the client reading nothing meanwhile.
pub async fn wait_server_closed(tcp: &TcpStream, secs: u64, what: &str) {
    let (client, server) = (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !server_closed(client, server) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the server did not close it within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The TCP connection under a plain (not TLS) WebSocket.
pub fn ws_tcp(ws: &Ws) -> &TcpStream {
    match ws.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        _ => panic!("a TLS socket in a test"),
    }
}

/// A refused request: its status and its error's code (every error has the
/// body `{"error": {"code", "message"}}`).
pub async fn refusal(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("a {status} without a JSON body: {e}"));
    let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    (status, code.to_string())
}

// ---------------------------------------------------------------------------
// PostgreSQL: a database of the test's own on the cluster `make postgres`
// runs (scripts/ensure-postgres.sh), dropped when the test ends.

/// The cluster's URL: `REPLBOX_TEST_DATABASE_URL`, or what
/// scripts/ensure-postgres.sh wrote beside its cluster.
pub fn postgres_url() -> String {
    if let Ok(url) = std::env::var("REPLBOX_TEST_DATABASE_URL") {
        return url;
    }
    let file = "/var/lib/replbox/postgres.url";
    match std::fs::read_to_string(file) {
        Ok(url) => url.trim().to_string(),
        Err(e) => panic!(
            "no PostgreSQL for the tests ({file}: {e}): run `make postgres`, which starts one \
             (or set REPLBOX_TEST_DATABASE_URL)"
        ),
    }
}

/// A database made for one test (`CREATE DATABASE` with a random name),
/// dropped when this is dropped, even after a failure.
pub struct PgDatabase {
    /// The URL a server or a store takes (`REPLBOX_DATABASE_URL`).
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    pub async fn new() -> Self {
        use sqlx::Connection as _;
        let admin = postgres_url();
        let mut conn = match tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect(&admin),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("no PostgreSQL answers at the tests' URL ({e}): run `make postgres`, which starts one"),
            Err(_) => panic!("PostgreSQL did not answer within 10 s: run `make postgres`, which starts one"),
        };
        let name = format!("rbt_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
        PgDatabase {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own thread and runtime: drop may run inside a runtime, or
        // while a failed test unwinds.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection as _;
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("cannot drop the test database {}: {dropped:?}", self.name);
        }
    }
}
