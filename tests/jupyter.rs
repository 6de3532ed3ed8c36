//! The Jupyter gateway at /jupyter with real outside clients: a stock
//! Jupyter Server (PyPI `jupyter_server`) in gateway mode against the test
//! server, driven through its own REST API and channels socket, and
//! nbclient (PyPI) running a notebook through it
//! (tests/clients/jupyter_check.py). Also /jupyter's auth, and
//! KERNEL_USERNAME naming the API sandbox whose files the kernel sees.

mod common;

use common::*;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A Jupyter Server on 127.0.0.1, killed when dropped.
struct JupyterServer {
    _child: tokio::process::Child,
    url: String,
    _root: tempfile::TempDir,
    _drain: tokio::task::JoinHandle<()>,
}

impl JupyterServer {
    /// Starts `jupyter server` in gateway mode against `gateway` and waits
    /// until it says where it listens.
    async fn start(gateway: &str, token: &str, own_token: &str, kernel_username: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new("jupyter")
            .args([
                "server",
                &format!("--gateway-url={gateway}"),
                &format!("--GatewayClient.auth_token={token}"),
                &format!("--ServerApp.token={own_token}"),
                "--ServerApp.ip=127.0.0.1",
                &format!("--ServerApp.port={port}"),
                "--ServerApp.port_retries=0",
                "--no-browser",
                // For the token-less server: its REST calls carry no token.
                "--ServerApp.disable_check_xsrf=True",
                "--allow-root",
                &format!("--ServerApp.root_dir={}", root.path().display()),
            ])
            .env("KERNEL_USERNAME", kernel_username)
            .env("JUPYTER_CONFIG_DIR", root.path().join(".config"))
            .env("JUPYTER_DATA_DIR", root.path().join(".data"))
            .env("JUPYTER_RUNTIME_DIR", root.path().join(".runtime"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("jupyter server runs (`make pydeps` installs jupyter_server)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = format!("http://127.0.0.1:{port}");
        let mut seen = Vec::new();
        let ready = within(90, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let up = line.contains(&format!("127.0.0.1:{port}/"));
                seen.push(line);
                if up {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(ready, "jupyter server did not start:\n{}", seen.join("\n"));
        // Its log goes on; read it so it never blocks, and show it.
        let drain = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("jupyter server: {line}");
            }
        });
        JupyterServer {
            _child: child,
            url,
            _root: root,
            _drain: drain,
        }
    }
}

#[tokio::test]
async fn a_stock_jupyter_server_and_nbclient_run_kernels_in_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path());
    let sandboxes = engine(config.sandbox.clone()).await;
    let server = TestServer::start(config).await;
    let jupyter = JupyterServer::start(
        &server.url("/jupyter"),
        "test-token",
        "jupyter-side-token",
        "nb-task",
    )
    .await;
    let open = JupyterServer::start(&server.url("/jupyter"), "test-token", "", "nb-task").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/jupyter_check.py"
    );
    let out = within(
        400,
        tokio::process::Command::new("python3")
            .args([
                script,
                &server.url(""),
                "test-token",
                &jupyter.url,
                "jupyter-side-token",
                "nb-task",
                &open.url,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("every check passed"),
        "the Jupyter clients' checks failed:\n{stdout}\n{stderr}"
    );
    drop((jupyter, open));
    server.stop().await;
    cleanup(&sandboxes).await;
}
