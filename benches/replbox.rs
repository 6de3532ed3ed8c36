//! `make bench`: replbox against the Docker engine itself, each figure beside
//! its baseline measured in the same run. Prints one JSON object last.
//!
//! The server runs as its own process (the release binary), so its memory
//! is measured apart from the clients'.

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const RUNS: usize = 200;
const EXEC_RUNS: usize = 100;
const STARTS: usize = 10;
const STREAM_BYTES: u64 = 268_435_456;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sandbox_config(prefix: &str) -> SandboxConfig {
    SandboxConfig {
        agent_path: root().join("target/x86_64-unknown-linux-gnu/release/replbox-agent"),
        name_prefix: prefix.to_string(),
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
    async fn start(prefix: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(root().join("target/release/replbox"))
            .env("REPLBOX_ADDR", &addr)
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_NAME_PREFIX", prefix)
            .env("REPLBOX_API_TOKENS", "bench")
            .env(
                "REPLBOX_AGENT_PATH",
                root().join("target/x86_64-unknown-linux-gnu/release/replbox-agent"),
            )
            .env("RUST_LOG", "warn")
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
            .unwrap_or(0)
    }

    fn stop(mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A new browser: visits the page, opens its socket.
async fn browser(addr: &str, mode: &str) -> Ws {
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
    let mut req = format!("ws://{addr}/ws?output={mode}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap();
    ws
}

/// Sends a run and waits for its exit frame; counts binary output bytes.
async fn run(ws: &mut Ws, req: Value) -> (Duration, u64) {
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

async fn docker_exec(docker: &bollard::Docker, id: &str, cmd: &[&str]) -> (Duration, u64) {
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
    let mut exec = Vec::new();
    for _ in 0..EXEC_RUNS {
        exec.push(ms(docker_exec(&docker, handle.container_id(), &["true"])
            .await
            .0));
    }
    let exec_p50 = pct(&mut exec, 0.5);
    out.insert("agent_roundtrip_p50_ms".into(), json!(pct(&mut agent, 0.5)));
    out.insert("docker_exec_p50_ms".into(), json!(exec_p50));

    // The engine streaming 256 MiB by exec.
    eprintln!("bench: docker exec streaming 256 MiB");
    let cmd = format!("head -c {STREAM_BYTES} /dev/zero");
    let (d, bytes) = docker_exec(&docker, handle.container_id(), &["sh", "-c", &cmd]).await;
    assert!(bytes >= STREAM_BYTES);
    let docker_stream = STREAM_BYTES as f64 / 1048576.0 / d.as_secs_f64();
    out.insert(
        "docker_exec_stream_mb_per_s".into(),
        json!(docker_stream.round()),
    );
    let direct_id = handle.container_id().to_string();
    drop(handle);
    sandboxes.remove(&direct_id).await.unwrap();

    // --- The engine's create + start of the same image.
    eprintln!("bench: docker create+start vs a new session");
    let mut create_start = Vec::new();
    for i in 0..STARTS {
        let t = Instant::now();
        let name = format!("{prefix}-raw-{i}");
        let c = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(sandboxes.config().image.clone()),
                    entrypoint: Some(vec!["/bin/sleep".into()]),
                    cmd: Some(vec!["60".into()]),
                    network_disabled: Some(true),
                    host_config: Some(bollard::models::HostConfig {
                        network_mode: Some("none".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        docker.start_container(&c.id, None).await.unwrap();
        create_start.push(ms(t.elapsed()));
        docker
            .remove_container(
                &c.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
    let create_start_p50 = pct(&mut create_start, 0.5);
    out.insert("docker_create_start_p50_ms".into(), json!(create_start_p50));

    // --- Through the server, as a browser sees it.
    let server = Server::start(&prefix).await;
    let mut cold = Vec::new();
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut ws = browser(&server.addr, "binary").await;
        run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
        cold.push(ms(t.elapsed()));
    }
    let cold_p50 = pct(&mut cold, 0.5);
    out.insert("session_start_cold_p50_ms".into(), json!(cold_p50));
    out.insert(
        "cold_start_ratio".into(),
        json!(((cold_p50 / create_start_p50) * 100.0).round() / 100.0),
    );

    eprintln!("bench: run round trip through the page's socket");
    let mut ws = browser(&server.addr, "binary").await;
    run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
    let mut rt = Vec::new();
    for _ in 0..RUNS {
        rt.push(ms(run(&mut ws, json!({"type": "run", "argv": ["true"]}))
            .await
            .0));
    }
    let rt_p50 = pct(&mut rt, 0.5);
    out.insert("run_roundtrip_p50_ms".into(), json!(rt_p50));
    out.insert("run_roundtrip_p99_ms".into(), json!(pct(&mut rt, 0.99)));
    out.insert(
        "run_vs_docker_exec_ratio".into(),
        json!(((rt_p50 / exec_p50) * 1000.0).round() / 1000.0),
    );

    eprintln!("bench: streaming 256 MiB through the page's socket");
    let rss_before = server.rss_kb("VmRSS:");
    let (d, bytes) = run(&mut ws, json!({"type": "run", "command": cmd})).await;
    assert!(bytes >= STREAM_BYTES, "got {bytes} bytes");
    let stream = STREAM_BYTES as f64 / 1048576.0 / d.as_secs_f64();
    out.insert("stream_mb_per_s".into(), json!(stream.round()));
    out.insert(
        "stream_ratio".into(),
        json!(((stream / docker_stream) * 100.0).round() / 100.0),
    );
    out.insert(
        "server_rss_before_stream_mb".into(),
        json!(rss_before / 1024),
    );
    out.insert(
        "server_peak_rss_mb".into(),
        json!(server.rss_kb("VmHWM:") / 1024),
    );

    eprintln!("bench: the page in headless Chromium");
    let page = Command::new("node")
        .arg(root().join("benches/page.mjs"))
        .arg(format!("http://{}/", server.addr))
        .arg("10")
        .output()
        .expect("node");
    let line = String::from_utf8_lossy(&page.stdout);
    match serde_json::from_str::<Value>(line.trim().lines().last().unwrap_or("")) {
        Ok(Value::Object(m)) => out.extend(m),
        _ => eprintln!(
            "bench: page measurement failed: {line} {}",
            String::from_utf8_lossy(&page.stderr)
        ),
    }

    server.stop();
    for c in sandboxes.list().await.unwrap_or_default() {
        let _ = sandboxes.remove(&c.id).await;
    }
    for v in sandboxes.list_volumes().await.unwrap_or_default() {
        let _ = sandboxes.remove_volume(&v.name).await;
    }
    println!("{}", Value::Object(out));
}
