//! `make bench`: replbox against the Docker engine itself, each figure beside
//! its baseline measured in the same run. Prints one JSON object last.
//!
//! The server runs as its own process (the release binary), so its memory
//! is measured apart from the clients'.

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::{SinkExt, StreamExt};
use replbox::config::SandboxConfig;
use replbox::sandbox::{CreateSpec, Sandboxes};
use replbox_protocol::JobSpec;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[path = "replbox/runsc.rs"]
mod runsc;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const RUNS: usize = 200;
/// Runs beside the idle set: at least this many, and for at least
/// `IDLE_RUNS_FOR` (three lease renewals and fifteen reaper passes of the
/// server's: what it does periodically for every session is met, not
/// dodged). The p99 of 200 back-to-back runs (half a second) was the 3rd
/// slowest, which one stall of the host moved by 10 ms between runs.
const RUNS_WITH_IDLE: usize = 1000;
const IDLE_RUNS_FOR: Duration = Duration::from_secs(16);
/// How long the host's CPU is watched with nothing asked of it, before and
/// beside the idle set.
const QUIET_WINDOW: Duration = Duration::from_secs(10);
/// The wait before such a window, after the last container started.
const SETTLE: Duration = Duration::from_secs(3);
/// Runs, then host spawns, in blocks of this many, alternating.
const TAIL_BLOCK: usize = 50;
const STARTS: usize = 15;
const STREAM_BYTES: u64 = 268_435_456;
const STREAM_RUNS: usize = 11;
const IDLE: usize = 1000;
const CELLS: usize = 200;
const LOAD_CLIENTS: usize = 100;
const LOAD_RUNS: usize = 20;
const PAGE_VISITS: usize = 10;
const ONESHOTS: usize = 30;

async fn remove_all(sandboxes: &Sandboxes) {
    for c in sandboxes.list().await.unwrap_or_default() {
        let _ = sandboxes.remove(&c.id).await;
    }
    for v in sandboxes.list_volumes().await.unwrap_or_default() {
        let _ = sandboxes.remove_volume(&v.name).await;
    }
}

/// Waits until the warm pool of the server whose containers carry `prefix`
/// holds `n` containers (the engine's list of pool containers says).
async fn wait_pool_of(prefix: &str, n: usize) {
    let sandboxes = Sandboxes::new(sandbox_config(prefix)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pool = sandboxes
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.name.contains("-pool-") && c.running)
            .count();
        // Exactly `n` by name: a claimed container still named as the
        // pool's (its rename is asynchronous) would make it n + 1.
        if pool == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the warm pool of {prefix} did not settle at {n} within 120 s (it has {pool})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many containers of `prefix` the engine lists.
async fn containers_of(prefix: &str) -> usize {
    Sandboxes::new(sandbox_config(prefix))
        .unwrap()
        .list()
        .await
        .map(|l| l.len())
        .unwrap_or(0)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sandbox_config(prefix: &str) -> SandboxConfig {
    SandboxConfig {
        agent_path: root().join("target/x86_64-unknown-linux-gnu/release/replbox-agent"),
        name_prefix: prefix.to_string(),
        runtime: None,
        ..SandboxConfig::default()
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    (v[i] * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(prefix: &str, pool: usize) -> Server {
        Self::start_with(prefix, pool, &[]).await
    }

    /// With more environment for the server (`REPLBOX_RUNTIME`, say).
    async fn start_with(prefix: &str, pool: usize, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut command = Command::new(root().join("target/release/replbox"));
        // Only what the bench says: a REPLBOX_* of the caller's shell
        // (`REPLBOX_RUNTIME=runsc` after `make test-gvisor`, say) would
        // change what a baseline measures.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("REPLBOX_")) {
            command.env_remove(key);
        }
        let child = command
            .env("REPLBOX_ADDR", &addr)
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_NAME_PREFIX", prefix)
            .env("REPLBOX_API_TOKENS", "bench")
            .env(
                "REPLBOX_AGENT_PATH",
                root().join("target/x86_64-unknown-linux-gnu/release/replbox-agent"),
            )
            .env("RUST_LOG", "warn")
            .env("REPLBOX_JOB_OUTPUT_LIMIT", "1073741824")
            .env("REPLBOX_NEW_SESSIONS_PER_MINUTE", "100000")
            .env("REPLBOX_MAX_SANDBOXES", (idle_count() + 100).to_string())
            // Every idle tab's socket comes from this one address.
            .env(
                "REPLBOX_CONNECTIONS_PER_CLIENT",
                (idle_count() + 200).to_string(),
            )
            // Hundreds of idle workspaces at once, each counted at its quota
            // by the disk budget: the bench measures density, not disk.
            .env("REPLBOX_DISK_BUDGET_MB", "100000000")
            .env("REPLBOX_WARM_POOL", pool.to_string())
            .envs(server_env_override())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("target/release/replbox: run `cargo build --release` first");
        for _ in 0..100 {
            if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    fn rss_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .filter(|&v: &u64| v > 0)
            .unwrap_or_else(|| panic!("the server's {field} could not be read (did it exit?)"))
    }

    fn stop(mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
    }
}

/// A bench that fails half-way does not leave its server running (its
/// warm pool would refill for ever).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A new browser's socket: visits the page for its cookie; the socket's URL
/// and that cookie.
async fn socket_url(addr: &str, mode: &str) -> (String, String) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    client.get(format!("http://{addr}/")).send().await.unwrap();
    use reqwest::cookie::CookieStore;
    let cookie = jar
        .cookies(&format!("http://{addr}/").parse().unwrap())
        .unwrap();
    (
        format!("ws://{addr}/ws?output={mode}"),
        cookie.to_str().unwrap().to_string(),
    )
}

/// A new browser: visits the page, opens its socket.
async fn browser(addr: &str, mode: &str) -> Ws {
    let (url, cookie) = socket_url(addr, mode).await;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap();
    ws
}

/// Runs a shell line and returns its output as text.
async fn run_text(ws: &mut Ws, line: &str) -> (String, Duration) {
    tokio::time::timeout(Duration::from_secs(60), run_text_unbounded(ws, line))
        .await
        .unwrap_or_else(|_| panic!("no exit frame within 60 s for {line:?}"))
}

async fn run_text_unbounded(ws: &mut Ws, line: &str) -> (String, Duration) {
    let t = Instant::now();
    ws.send(Message::Text(
        json!({"type": "run", "command": line}).to_string().into(),
    ))
    .await
    .unwrap();
    let mut text = Vec::new();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) if b.len() >= 18 => text.extend_from_slice(&b[18..]),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "exit" {
                    break;
                }
            }
            _ => {}
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), t.elapsed())
}

/// Sends a run and waits for its exit frame; counts binary output bytes.
/// One run over the page's socket, to its exit frame. A run that gets no
/// exit within a minute fails the bench (a hang is a finding, not a wait).
async fn run(ws: &mut Ws, req: Value) -> (Duration, u64) {
    let what = req.to_string();
    tokio::time::timeout(Duration::from_secs(60), run_unbounded(ws, req))
        .await
        .unwrap_or_else(|_| panic!("no exit frame within 60 s for {what}"))
}

async fn run_unbounded(ws: &mut Ws, req: Value) -> (Duration, u64) {
    let t = Instant::now();
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    let mut bytes = 0u64;
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => bytes += b.len().saturating_sub(18) as u64,
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("exit") => break,
                    Some("error") | Some("failed") => panic!("run failed: {v}"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (t.elapsed(), bytes)
}

/// One exec by the engine's API; a minute without its end fails the bench.
async fn docker_exec(docker: &bollard::Docker, id: &str, cmd: &[&str]) -> (Duration, u64) {
    tokio::time::timeout(
        Duration::from_secs(60),
        docker_exec_unbounded(docker, id, cmd),
    )
    .await
    .unwrap_or_else(|_| panic!("the engine's exec of {cmd:?} did not end within 60 s"))
}

async fn docker_exec_unbounded(
    docker: &bollard::Docker,
    id: &str,
    cmd: &[&str],
) -> (Duration, u64) {
    let t = Instant::now();
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut bytes = 0u64;
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            bytes += chunk.into_bytes().len() as u64;
        }
    }
    docker.inspect_exec(&exec.id).await.unwrap();
    (t.elapsed(), bytes)
}

#[tokio::main]
async fn main() {
    let prefix = format!("rbb-{:06x}", rand::random::<u32>() & 0xffffff);
    let sandboxes = Sandboxes::new(sandbox_config(&prefix)).unwrap();
    sandboxes
        .ping()
        .await
        .expect("no Docker engine: run `make docker`");
    let docker = sandboxes.docker().unwrap();
    let mut out = serde_json::Map::new();
    // Measurements that could not be taken: `make bench` fails on them.
    let mut failures: Vec<String> = Vec::new();

    // `REPLBOX_BENCH_ONLY=idle`: the idle, load and page phases alone (to
    // work on density; the other keys are then missing and the exit is 1).
    if std::env::var("REPLBOX_BENCH_ONLY").as_deref() == Ok("idle") {
        idle_load_and_page(&prefix, &mut out, &mut failures).await;
        std::process::exit(report(&out, &failures));
    }

    // --- The agent alone, and the engine's exec, on one container.
    eprintln!("bench: agent round trip vs docker exec");
    let handle = sandboxes
        .create(&CreateSpec {
            session: "direct".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut agent = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        handle
            .spawn(JobSpec::argv(["true"]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        agent.push(ms(t.elapsed()));
    }
    out.insert("agent_roundtrip_p50_ms".into(), json!(pct(&mut agent, 0.5)));

    let cmd = format!("head -c {STREAM_BYTES} /dev/zero");
    // The same through the agent connection alone (no socket): a diagnostic.
    let t = Instant::now();
    let mut job = handle.spawn(JobSpec::shell(cmd.clone())).await.unwrap();
    let mut got = 0u64;
    while let Some(ev) = job.next().await {
        match ev {
            replbox::sandbox::JobEvent::Output { data, .. } => got += data.len() as u64,
            replbox::sandbox::JobEvent::Exit(_) => break,
            _ => {}
        }
    }
    assert!(got >= STREAM_BYTES);
    out.insert(
        "agent_stream_mb_per_s".into(),
        json!((STREAM_BYTES as f64 / 1048576.0 / t.elapsed().as_secs_f64()).round()),
    );
    let direct_id = handle.container_id().to_string();
    drop(handle);
    sandboxes.remove(&direct_id).await.unwrap();

    // --- A new session with no pool against the engine's create + start of
    // the same container a session gets (same image, mounts and limits,
    // without attach or handshake), alternating, so that the engine's drift
    // during the run weighs on both alike.
    eprintln!("bench: new sessions (cold) vs docker create+start, alternating");
    let server = Server::start(&format!("{prefix}c"), 0).await;
    let (mut create_start, mut cold) = (Vec::new(), Vec::new());
    for i in 0..STARTS {
        let t = Instant::now();
        let id = sandboxes
            .create_container(&CreateSpec {
                session: format!("raw-{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        docker.start_container(&id, None).await.unwrap();
        create_start.push(ms(t.elapsed()));
        sandboxes.remove(&id).await.unwrap();

        let t = Instant::now();
        let mut ws = browser(&server.addr, "binary").await;
        run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
        cold.push(ms(t.elapsed()));
    }
    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&format!("{prefix}c"))).unwrap()).await;
    let create_start_p50 = pct(&mut create_start, 0.5);
    out.insert("docker_create_start_p50_ms".into(), json!(create_start_p50));
    let cold_p50 = pct(&mut cold, 0.5);
    out.insert("session_start_cold_p50_ms".into(), json!(cold_p50));
    out.insert(
        "cold_start_ratio".into(),
        json!(((cold_p50 / create_start_p50) * 100.0).round() / 100.0),
    );

    // Warm: the pool refilled before each new browser.
    let server = Server::start(&prefix, 4).await;
    let mut warm = Vec::new();
    // Where a warm start's time goes: the page (and its cookie), the
    // socket's upgrade, the first run (which waits for the sandbox).
    let (mut page, mut upgrade, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STARTS {
        wait_pool_of(&prefix, 4).await;
        let t = Instant::now();
        let (url, cookie) = socket_url(&server.addr, "binary").await;
        let paged = t.elapsed();
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .unwrap();
        let upgraded = t.elapsed();
        run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
        warm.push(ms(t.elapsed()));
        page.push(ms(paged));
        upgrade.push(ms(upgraded - paged));
        first.push(ms(t.elapsed() - upgraded));
    }
    eprintln!(
        "bench: a warm start's medians: page {:.2} ms, socket upgrade {:.2} ms, first run {:.2} ms",
        pct(&mut page, 0.5),
        pct(&mut upgrade, 0.5),
        pct(&mut first, 0.5)
    );
    out.insert(
        "session_start_warm_p50_ms".into(),
        json!(pct(&mut warm, 0.5)),
    );

    // A run of `true` through the page's socket against the engine's exec
    // of `true` in the same container (the session's), alternating, after
    // the same warm-up for both.
    eprintln!("bench: run round trip through the page's socket vs docker exec, alternating");
    let mut ws = browser(&server.addr, "binary").await;
    let (host, _) = run_text(&mut ws, "cat /etc/hostname").await;
    let host = host.trim().to_string();
    // In alternating blocks (10 runs, then 5 execs), so drift weighs on
    // both alike; the first of each block, which pays for the other
    // block's aftermath (an exec's clean-up in the engine slows the next
    // run by a millisecond or more), and the whole first block are not
    // counted.
    let (mut rt, mut exec) = (Vec::new(), Vec::new());
    for block in 0..=RUNS / 10 {
        for i in 0..=10 {
            let ours = ms(run(&mut ws, json!({"type": "run", "argv": ["true"]}))
                .await
                .0);
            if block > 0 && i > 0 {
                rt.push(ours);
            }
        }
        for i in 0..=5 {
            let theirs = ms(docker_exec(&docker, &host, &["true"]).await.0);
            if block > 0 && i > 0 {
                exec.push(theirs);
            }
        }
    }
    let exec_p50 = pct(&mut exec, 0.5);
    out.insert("docker_exec_p50_ms".into(), json!(exec_p50));
    let rt_p50 = pct(&mut rt, 0.5);
    out.insert("run_roundtrip_p50_ms".into(), json!(rt_p50));
    out.insert("run_roundtrip_p99_ms".into(), json!(pct(&mut rt, 0.99)));
    out.insert(
        "run_vs_docker_exec_ratio".into(),
        json!(((rt_p50 / exec_p50) * 1000.0).round() / 1000.0),
    );

    // The one-shot run (`POST /api/v1/run`) of `print(6*7)` against the
    // same program by exec in a live API sandbox, alternating; the pool
    // refilled before each one-shot run, as a new session's warm start is.
    eprintln!("bench: one-shot runs vs exec in a live sandbox, alternating");
    let (oneshot_p50, live_p50) = oneshot_vs_live(&server.addr, &prefix).await;
    out.insert("oneshot_run_p50_ms".into(), json!(oneshot_p50));
    out.insert("live_exec_p50_ms".into(), json!(live_p50));
    out.insert(
        "oneshot_vs_live_exec_ratio".into(),
        json!(((oneshot_p50 / live_p50) * 100.0).round() / 100.0),
    );

    // The same 256 MiB through the socket and by the engine's exec, in the
    // same container, alternating, medians of STREAM_RUNS each (one run
    // varies by a factor of 3 on 2 cores).
    eprintln!("bench: streaming 256 MiB through the page's socket and by docker exec");
    let rss_before = server.rss_kb("VmRSS:");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..STREAM_RUNS {
        // Which goes first alternates too (AB, BA, ...).
        for ours_now in [i % 2 == 0, i % 2 == 1] {
            if ours_now {
                let (d, bytes) = run(&mut ws, json!({"type": "run", "command": cmd})).await;
                assert!(bytes >= STREAM_BYTES, "got {bytes} bytes");
                ours.push(STREAM_BYTES as f64 / 1048576.0 / d.as_secs_f64());
            } else {
                let (d, bytes) = docker_exec(&docker, &host, &["sh", "-c", &cmd]).await;
                assert!(bytes >= STREAM_BYTES);
                theirs.push(STREAM_BYTES as f64 / 1048576.0 / d.as_secs_f64());
            }
        }
    }
    let stream = pct(&mut ours, 0.5);
    let docker_stream = pct(&mut theirs, 0.5);
    out.insert("stream_mb_per_s".into(), json!(stream.round()));
    out.insert(
        "docker_exec_stream_mb_per_s".into(),
        json!(docker_stream.round()),
    );
    out.insert(
        "stream_ratio".into(),
        json!(((stream / docker_stream) * 100.0).round() / 100.0),
    );
    out.insert(
        "server_rss_before_stream_mb".into(),
        json!(rss_before / 1024),
    );
    let peak = server.rss_kb("VmHWM:");
    out.insert("server_peak_rss_mb".into(), json!(peak / 1024));
    out.insert(
        "server_peak_rss_growth_mb".into(),
        json!((peak as i64 - rss_before as i64) / 1024),
    );

    // --- Notebook cells: `1+1` through the socket to a kernel in the
    // sandbox, against ipykernel on the host driven by jupyter_client, both
    // from one Python process, alternating cell by cell, each to its
    // result, reply and idle status.
    eprintln!("bench: notebook cells through the socket and ipykernel directly, alternating");
    let (url, cookie) = socket_url(&server.addr, "json").await;
    let cells = Command::new("python3")
        .arg(root().join("benches/cells.py"))
        .args([
            url,
            cookie,
            CELLS.to_string(),
            format!("http://{}", server.addr),
            "bench".to_string(),
        ])
        .output()
        .expect("python3 (make bench installs jupyter_client and websockets)");
    let line = String::from_utf8_lossy(&cells.stdout);
    match serde_json::from_str::<Value>(line.trim().lines().last().unwrap_or("")) {
        Ok(v) => {
            let ours = v["cell_roundtrip_p50_ms"].as_f64().unwrap_or(f64::NAN);
            let direct = v["ipykernel_direct_p50_ms"].as_f64().unwrap_or(f64::NAN);
            out.insert("cell_roundtrip_p50_ms".into(), json!(ours));
            out.insert("ipykernel_direct_p50_ms".into(), json!(direct));
            out.insert(
                "cell_ratio".into(),
                json!(((ours / direct) * 100.0).round() / 100.0),
            );
            // The same cell through the Jupyter gateway, alternated with ours.
            let gateway = v["gateway_cell_p50_ms"].as_f64().unwrap_or(f64::NAN);
            out.insert("gateway_cell_p50_ms".into(), json!(gateway));
            out.insert(
                "gateway_vs_socket_cell_ratio".into(),
                json!(((gateway / ours) * 100.0).round() / 100.0),
            );
        }
        Err(_) => failures.push(format!(
            "the notebook cells (benches/cells.py) failed: {}",
            String::from_utf8_lossy(&cells.stderr).trim()
        )),
    }
    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;

    runsc::phase(&prefix, &docker, &mut out, &mut failures).await;

    idle_load_and_page(&prefix, &mut out, &mut failures).await;
    remove_all(&sandboxes).await;
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;
    std::process::exit(report(&out, &failures));
}

/// Idle sessions, load on their sockets, and the page, on a server that has
/// done nothing else (so no spare memory of the phases before hides what
/// the sessions cost).
async fn idle_load_and_page(
    prefix: &str,
    out: &mut serde_json::Map<String, Value>,
    failures: &mut Vec<String>,
) {
    let prefix = format!("{prefix}i");
    let server = Server::start(&prefix, 4).await;
    wait_pool_of(&prefix, 4).await;
    let mut ws = browser(&server.addr, "binary").await;
    run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
    // The baseline before the idle set: the same runs on the same server,
    // the same host spawns, with no other session.
    // The first session's claim is replaced (after the pool's refill
    // delay) before the host is watched: nothing is starting in the window.
    wait_pool_of(&prefix, 4).await;
    tokio::time::sleep(SETTLE).await;
    quiet_cpu(out, "no_idle", QUIET_WINDOW).await;
    let runs = timed_runs(&mut ws).await;
    runs.report("before the idle set");
    insert_tails(out, "no_idle", runs);
    // --- IDLE sessions alive at once, each with its tab open; the host's
    // used memory before and after, over their number, is what one idle
    // sandbox costs everywhere (agent, shim, engine, cgroup, kernel).
    eprintln!("bench: {} idle sessions", idle_count());
    // The pool refilled after the first session took from it.
    wait_pool_of(&prefix, 4).await;
    let rss_before = server.rss_kb("VmRSS:");
    let host_before = host_used_kb();
    let own_before = own_rss_kb();
    let mut idle: Vec<Ws> = Vec::new();
    for batch in 0..idle_count() / 8 {
        let opened = futures::future::join_all((0..8).map(|_| async {
            let mut ws = browser(&server.addr, "binary").await;
            run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
            ws
        }))
        .await;
        idle.extend(opened);
        if batch % 25 == 0 {
            eprintln!("bench:   {} sessions", idle.len());
        }
    }
    // Settled: every idle sandbox, the first session's and a full pool
    // are running (the pool refills after each claim).
    let want = idle.len() + 1 + 4;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut have = containers_of(&prefix).await;
    while have != want {
        if Instant::now() > deadline {
            failures.push(format!(
                "idle: the engine lists {have} containers of the idle server, not {want}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        have = containers_of(&prefix).await;
    }
    wait_pool_of(&prefix, 4).await;
    let rss_after = server.rss_kb("VmRSS:");
    let host_after = host_used_kb();
    let own_after = own_rss_kb();
    // The bench's own sockets are not the sandboxes' cost.
    let own_growth = own_after.saturating_sub(own_before);
    out.insert(
        "system_used_idle_before_mb".into(),
        json!(host_before / 1024),
    );
    out.insert("system_used_idle_after_mb".into(), json!(host_after / 1024));
    out.insert(
        "bench_client_rss_growth_mb".into(),
        json!(own_growth / 1024),
    );
    out.insert(
        "system_mem_per_idle_sandbox_mb".into(),
        json!(
            ((host_after as f64 - host_before as f64 - own_growth as f64)
                / 1024.0
                / idle.len() as f64
                * 100.0)
                .round()
                / 100.0
        ),
    );
    out.insert("idle_sandboxes".into(), json!(idle.len()));
    out.insert("server_rss_idle_before_kb".into(), json!(rss_before));
    out.insert("server_rss_idle_after_kb".into(), json!(rss_after));
    out.insert(
        "server_rss_per_session_kb".into(),
        json!(((rss_after as f64 - rss_before as f64) / idle.len() as f64 * 10.0).round() / 10.0),
    );
    // The same runs beside the idle set, each followed by a baseline that
    // has no server and no sandbox in it: the host spawning `true` itself.
    // Its tail beside the tail before the idle set is the host's share.
    tokio::time::sleep(SETTLE).await;
    quiet_cpu(out, "with_idle", QUIET_WINDOW).await;
    let runs = timed_runs(&mut ws).await;
    out.insert("runs_with_idle".into(), json!(runs.run.len()));
    runs.report("beside the idle set");
    insert_tails(out, "with_idle", runs);

    // --- Load: 100 of those tabs run 20 jobs each, all at once.
    eprintln!("bench: load, {LOAD_CLIENTS} sockets x {LOAD_RUNS} runs");
    let results =
        futures::future::join_all(idle.iter_mut().take(LOAD_CLIENTS).map(|ws| async move {
            let mut times = Vec::new();
            let mut errors = 0;
            for i in 0..LOAD_RUNS {
                match tokio::time::timeout(
                    Duration::from_secs(30),
                    run(ws, json!({"type": "run", "argv": ["true"]})),
                )
                .await
                {
                    Ok((d, _)) => times.push(ms(d)),
                    Err(_) => {
                        // Its late frames would time the next run wrongly:
                        // the rest of this socket's runs count as errors.
                        errors += LOAD_RUNS - i;
                        break;
                    }
                }
            }
            (times, errors)
        }))
        .await;
    let mut load: Vec<f64> = results.iter().flat_map(|(t, _)| t.clone()).collect();
    out.insert("load_clients".into(), json!(LOAD_CLIENTS));
    out.insert("load_runs".into(), json!(LOAD_RUNS));
    out.insert(
        "load_errors".into(),
        json!(results.iter().map(|(_, e)| e).sum::<usize>()),
    );
    out.insert("load_p50_ms".into(), json!(pct(&mut load, 0.5)));
    out.insert("load_p99_ms".into(), json!(pct(&mut load, 0.99)));
    drop(idle);

    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;

    // --- The page: a new browser's first visit, on a fresh server whose
    // pool is full before each visit (what a student meets on a server at
    // rest), one visit per Chromium context.
    eprintln!("bench: the page in headless Chromium, pool warm before each visit");
    let prefix = format!("{prefix}p");
    let server = Server::start(&prefix, 4).await;
    let (mut ready, mut js_kb) = (Vec::new(), None);
    for _ in 0..PAGE_VISITS {
        wait_pool_of(&prefix, 4).await;
        let page = Command::new("node")
            .arg(root().join("benches/page.mjs"))
            .arg(format!("http://{}/", server.addr))
            .arg("1")
            .output()
            .expect("node");
        let line = String::from_utf8_lossy(&page.stdout);
        match serde_json::from_str::<Value>(line.trim().lines().last().unwrap_or("")) {
            Ok(v) if v["page_ready_ms"].is_number() && v["page_js_kb_gzip"].is_number() => {
                ready.push(v["page_ready_ms"].as_f64().unwrap_or(f64::NAN));
                js_kb = js_kb.or(v["page_js_kb_gzip"].as_f64());
            }
            _ => {
                failures.push(format!(
                    "the page measurement (benches/page.mjs) failed: {line} {}",
                    String::from_utf8_lossy(&page.stderr).trim()
                ));
                break;
            }
        }
    }
    if ready.len() == PAGE_VISITS {
        out.insert("page_js_kb_gzip".into(), json!(js_kb));
        out.insert("page_ready_ms".into(), json!(pct(&mut ready, 0.5).round()));
        out.insert(
            "page_ready_max_ms".into(),
            json!(pct(&mut ready, 1.0).round()),
        );
    }
    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;
}

/// CPU ticks so far by process id, with the process's name (every
/// process's and kernel thread's user + system time, `/proc/<pid>/stat`;
/// a kernel worker's name after its first `-` is the work it does now, and
/// is cut).
type Ticks = std::collections::HashMap<u32, (String, u64)>;

fn process_ticks() -> Ticks {
    let mut by_pid = Ticks::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut name = stat[open + 1..close].to_string();
        if name.starts_with("kworker") {
            name = "kworker".into();
        }
        // After the name: state is field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        by_pid.insert(pid, (name, ticks));
    }
    by_pid
}

/// The host's busy and total ticks (`/proc/stat`'s first line): busy is
/// user, nice, system, irq and softirq; total adds idle and iowait. Steal
/// (another VM's) and guest (already in user) are in neither.
fn host_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    (busy, busy + at(3) + at(4))
}

/// The host's CPU over `window` while the bench does nothing: the share of
/// all cores busy (`idle_cpu_pct_<suffix>`), and on stderr the processes
/// that used most of it (a process that ended in the window is missed).
async fn quiet_cpu(out: &mut serde_json::Map<String, Value>, suffix: &str, window: Duration) {
    // The scans of /proc are outside the host's window: with 1000
    // sandboxes they read thousands of files.
    let before = process_ticks();
    let (busy0, total0) = host_ticks();
    tokio::time::sleep(window).await;
    let (busy1, total1) = host_ticks();
    let after = process_ticks();
    let pct = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * 100.0;
    out.insert(
        format!("idle_cpu_pct_{suffix}"),
        json!((pct * 10.0).round() / 10.0),
    );
    // By name, over every process of that name (a process started in the
    // window counts whole; one that ended in it is missed).
    let mut by_name = std::collections::HashMap::<String, u64>::new();
    for (pid, (name, t)) in after {
        let was = before.get(&pid).map_or(0, |(_, t)| *t);
        *by_name.entry(name).or_default() += t.saturating_sub(was);
    }
    let mut used: Vec<(String, u64)> = by_name.into_iter().filter(|(_, t)| *t > 0).collect();
    used.sort_by_key(|u| std::cmp::Reverse(u.1));
    let top: Vec<String> = used
        .iter()
        .take(10)
        .map(|(name, t)| format!("{name} {} ms", t * 10))
        .collect();
    eprintln!(
        "bench: host CPU {suffix} over {} s: {pct:.1}% of all cores; by process name: {}",
        window.as_secs(),
        top.join(", ")
    );
}

/// Runs of `true` on one socket, for at least `IDLE_RUNS_FOR` and
/// `RUNS_WITH_IDLE` runs, in blocks of `TAIL_BLOCK` back to back,
/// alternating with blocks of as many spawns of `true` by the host itself
/// (no server, no engine, no sandbox: what the host's scheduler and
/// fork/exec cost at that moment).
struct TimedRuns {
    /// Each run: (ms since the first run began, its time in ms).
    run: Vec<(f64, f64)>,
    host: Vec<f64>,
}

async fn timed_runs(ws: &mut Ws) -> TimedRuns {
    let mut runs = TimedRuns {
        run: Vec::new(),
        host: Vec::new(),
    };
    let began = Instant::now();
    while runs.run.len() < RUNS_WITH_IDLE || began.elapsed() < IDLE_RUNS_FOR {
        for _ in 0..TAIL_BLOCK {
            let at = ms(began.elapsed());
            let took = ms(run(ws, json!({"type": "run", "argv": ["true"]})).await.0);
            runs.run.push((at, took));
        }
        let spawns = tokio::task::spawn_blocking(|| {
            (0..TAIL_BLOCK)
                .map(|_| {
                    let t = Instant::now();
                    let ok = Command::new("true").status().is_ok_and(|s| s.success());
                    assert!(ok, "the host could not run `true`");
                    ms(t.elapsed())
                })
                .collect::<Vec<f64>>()
        })
        .await
        .expect("the host's spawns");
        runs.host.extend(spawns);
    }
    runs
}

impl TimedRuns {
    /// When the slowest came (a period in them names what wakes up).
    fn report(&self, what: &str) {
        let mut when = self.run.clone();
        when.sort_by(|a, b| b.1.total_cmp(&a.1));
        let worst: Vec<String> = when
            .iter()
            .take(12)
            .map(|(at, took)| format!("{took:.1} ms at {:.2} s", at / 1000.0))
            .collect();
        eprintln!(
            "bench: the slowest runs {what} ({} runs): {}",
            self.run.len(),
            worst.join(", ")
        );
    }
}

/// `run_p99_ms_<suffix>`, `run_max_ms_<suffix>`, `host_spawn_p99_ms_<suffix>`.
fn insert_tails(out: &mut serde_json::Map<String, Value>, suffix: &str, mut runs: TimedRuns) {
    let mut took: Vec<f64> = runs.run.iter().map(|r| r.1).collect();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    out.insert(
        format!("run_p99_ms_{suffix}"),
        json!(round(pct(&mut took, 0.99))),
    );
    out.insert(
        format!("run_max_ms_{suffix}"),
        json!(round(pct(&mut took, 1.0))),
    );
    out.insert(
        format!("host_spawn_p99_ms_{suffix}"),
        json!(round(pct(&mut runs.host, 0.99))),
    );
}

/// `REPLBOX_BENCH_SERVER_ENV="REPLBOX_LEASE_RENEW_SECS=3600,..."`: more
/// environment for every server the bench starts, to take a figure apart
/// (the run's JSON names it under `server_env_override`: its figures are
/// not the product's).
fn server_env_override() -> Vec<(String, String)> {
    std::env::var("REPLBOX_BENCH_SERVER_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("REPLBOX_BENCH_SERVER_ENV: {kv:?} is not KEY=VALUE"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// How many idle sessions the bench holds: 1000, or `REPLBOX_BENCH_IDLE`.
fn idle_count() -> usize {
    std::env::var("REPLBOX_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IDLE)
}

/// The host's used memory (MemTotal - MemAvailable), in KiB.
fn host_used_kb() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (total, available) = (field("MemTotal:"), field("MemAvailable:"));
    assert!(
        total > 0 && available > 0 && available < total,
        "/proc/meminfo has no MemTotal/MemAvailable"
    );
    total - available
}

/// This bench process's own resident memory, in KiB (its sockets count in
/// the host's used memory, not in the sandboxes').
fn own_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("/proc/self/status has VmRSS")
}

/// Medians of ONESHOTS one-shot runs of `print(6*7)` and of as many execs
/// of the same program in a live sandbox, alternating (the first pair not
/// counted), the pool back to 4 before each one-shot run.
async fn oneshot_vs_live(addr: &str, prefix: &str) -> (f64, f64) {
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let r = http
        .post(url("/api/v1/sandboxes"))
        .bearer_auth("bench")
        .json(&json!({"taskId": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    http.get(url("/api/v1/sandboxes/live?wait=60"))
        .bearer_auth("bench")
        .send()
        .await
        .unwrap();
    http.put(url("/api/v1/sandboxes/live/files/main.py"))
        .bearer_auth("bench")
        .body("print(6*7)\n")
        .send()
        .await
        .unwrap();
    let (mut oneshot, mut live) = (Vec::new(), Vec::new());
    for i in 0..=ONESHOTS {
        wait_pool_of(prefix, 4).await;
        let d = timed_42(
            &http,
            url("/api/v1/run"),
            json!({"language": "python", "code": "print(6*7)\n"}),
        )
        .await;
        if i > 0 {
            oneshot.push(d);
        }
        // The same quiet engine for the other side: the one-shot's removal
        // and the pool's refill done.
        wait_pool_of(prefix, 4).await;
        let d = timed_42(
            &http,
            url("/api/v1/sandboxes/live/exec"),
            json!({"command": "python3 -u main.py"}),
        )
        .await;
        if i > 0 {
            live.push(d);
        }
    }
    http.delete(url("/api/v1/sandboxes/live"))
        .bearer_auth("bench")
        .send()
        .await
        .unwrap();
    (pct(&mut oneshot, 0.5), pct(&mut live, 0.5))
}

/// A POST whose answer must print 42; its time in ms.
async fn timed_42(http: &reqwest::Client, url: String, body: Value) -> f64 {
    let t = Instant::now();
    let v: Value = http
        .post(url)
        .bearer_auth("bench")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = ms(t.elapsed());
    assert_eq!(v["stdout"], "42\n", "{v}");
    d
}

/// A figure's README target.
#[derive(Clone, Copy)]
enum Target {
    None,
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
    Exactly(f64),
}

/// Every key `make bench` prints, with its target (docs/speed.md says how
/// each is measured).
const KEYS: &[(&str, Target)] = &[
    ("agent_roundtrip_p50_ms", Target::None),
    ("agent_stream_mb_per_s", Target::None),
    ("docker_create_start_p50_ms", Target::None),
    ("session_start_cold_p50_ms", Target::None),
    ("cold_start_ratio", Target::AtMost(1.2)),
    ("session_start_warm_p50_ms", Target::AtMost(15.0)),
    ("docker_exec_p50_ms", Target::None),
    ("run_roundtrip_p50_ms", Target::None),
    ("run_roundtrip_p99_ms", Target::None),
    ("run_vs_docker_exec_ratio", Target::AtMost(0.1)),
    ("oneshot_run_p50_ms", Target::None),
    ("live_exec_p50_ms", Target::None),
    ("oneshot_vs_live_exec_ratio", Target::AtMost(2.0)),
    ("stream_mb_per_s", Target::None),
    ("docker_exec_stream_mb_per_s", Target::None),
    ("stream_ratio", Target::AtLeast(0.8)),
    ("server_rss_before_stream_mb", Target::None),
    ("server_peak_rss_mb", Target::None),
    ("server_peak_rss_growth_mb", Target::Below(64.0)),
    ("cell_roundtrip_p50_ms", Target::None),
    ("ipykernel_direct_p50_ms", Target::None),
    ("cell_ratio", Target::AtMost(1.5)),
    ("gateway_cell_p50_ms", Target::None),
    ("gateway_vs_socket_cell_ratio", Target::AtMost(1.2)),
    ("idle_sandboxes", Target::None),
    ("server_rss_idle_before_kb", Target::None),
    ("server_rss_idle_after_kb", Target::None),
    ("server_rss_per_session_kb", Target::AtMost(100.0)),
    ("system_used_idle_before_mb", Target::None),
    ("system_used_idle_after_mb", Target::None),
    ("bench_client_rss_growth_mb", Target::None),
    ("system_mem_per_idle_sandbox_mb", Target::AtMost(8.0)),
    ("idle_cpu_pct_no_idle", Target::None),
    ("idle_cpu_pct_with_idle", Target::None),
    ("run_p99_ms_no_idle", Target::None),
    ("run_max_ms_no_idle", Target::None),
    ("host_spawn_p99_ms_no_idle", Target::None),
    ("run_p99_ms_with_idle", Target::AtMost(10.0)),
    ("run_max_ms_with_idle", Target::None),
    ("runs_with_idle", Target::None),
    ("host_spawn_p99_ms_with_idle", Target::None),
    ("load_clients", Target::None),
    ("load_runs", Target::None),
    ("load_errors", Target::Exactly(0.0)),
    ("load_p50_ms", Target::None),
    ("load_p99_ms", Target::None),
    ("page_js_kb_gzip", Target::Below(250.0)),
    ("page_ready_ms", Target::Below(500.0)),
    ("page_ready_max_ms", Target::None),
];

/// Prints the table of figures against their targets, then the JSON; the
/// exit code is 1 when a measurement failed or a key is missing.
fn report(out: &serde_json::Map<String, Value>, failures: &[String]) -> i32 {
    let mut missing = Vec::new();
    println!("{:<30} {:>12}  {:<10} verdict", "key", "value", "target");
    for (key, target) in KEYS {
        let Some(v) = out
            .get(*key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
        else {
            missing.push(*key);
            println!("{key:<30} {:>12}  {:<10} MISSING", "-", "");
            continue;
        };
        let (text, met) = match *target {
            Target::None => (String::new(), None),
            Target::AtMost(t) => (format!("<= {t}"), Some(v <= t)),
            Target::Below(t) => (format!("< {t}"), Some(v < t)),
            Target::AtLeast(t) => (format!(">= {t}"), Some(v >= t)),
            Target::Exactly(t) => (format!("= {t}"), Some(v == t)),
        };
        let verdict = match met {
            None => "",
            Some(true) => "met",
            Some(false) => "NOT MET",
        };
        println!("{key:<30} {v:>12}  {text:<10} {verdict}");
    }
    // Present only when the engine has the runtime.
    for key in runsc::KEYS {
        if let Some(v) = out.get(*key) {
            println!("{key:<30} {v:>12}");
        }
    }
    let mut out = out.clone();
    let overridden = std::env::var("REPLBOX_BENCH_SERVER_ENV").ok();
    if let Some(extra) = &overridden {
        println!("NOT THE PRODUCT'S FIGURES: servers ran with REPLBOX_BENCH_SERVER_ENV={extra}");
        out.insert("server_env_override".into(), json!(extra));
    }
    println!("{}", Value::Object(out));
    for f in failures {
        eprintln!("bench: FAILED: {f}");
    }
    if !missing.is_empty() {
        eprintln!("bench: FAILED: missing keys: {}", missing.join(", "));
    }
    if overridden.is_some() {
        eprintln!("bench: FAILED: REPLBOX_BENCH_SERVER_ENV was set (a diagnosis, not a run)");
    }
    i32::from(!failures.is_empty() || !missing.is_empty() || overridden.is_some())
}
