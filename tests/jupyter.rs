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

// ---------------------------------------------------------------------------
// The gateway under attack, with a raw WebSocket client: oversized kernel
// messages, a client that never reads, too many sockets.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Channels =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The kernel's channels socket as `token <t>`, or the HTTP refusal.
async fn channels(server: &TestServer, kernel: &str) -> Result<Channels, (u16, Value)> {
    let mut req = server
        .ws_url(&format!("/jupyter/api/kernels/{kernel}/channels"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "token test-token".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r.body().clone().unwrap_or_default();
            Err((
                r.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("the channels socket failed: {e}"),
    }
}

/// Sends an execute_request; its msg_id.
async fn execute(ws: &mut Channels, code: &str) -> String {
    let msg_id = format!("m{:08x}", rand::random::<u32>());
    let m = json!({
        "channel": "shell",
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": "raw-client",
                   "username": "t", "date": "2026-01-01T00:00:00Z", "version": "5.3"},
        "parent_header": {}, "metadata": {},
        "content": {"code": code, "silent": false, "store_history": true,
                    "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
    });
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    msg_id
}

/// The iopub messages answering `msg_id`, until its idle status.
async fn outputs(ws: &mut Channels, msg_id: &str) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(m) = ws.next().await {
        let Ok(Message::Text(t)) = m else {
            panic!("the socket ended while waiting for {msg_id}: {m:?}");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["parent_header"]["msg_id"] != msg_id || v["channel"] != "iopub" {
            continue;
        }
        if v["msg_type"] == "status" && v["content"]["execution_state"] == "idle" {
            return got;
        }
        got.push(v);
    }
    panic!("the socket ended while waiting for {msg_id}");
}

/// The text of a cell's stream messages.
fn streams(msgs: &[Value]) -> String {
    msgs.iter()
        .filter(|m| m["msg_type"] == "stream")
        .map(|m| m["content"]["text"].as_str().unwrap_or_default())
        .collect()
}

/// The kernel's `connections`, polled until it is `n`.
async fn wait_connections(server: &TestServer, kernel: &str, n: u64) {
    let path = format!("/jupyter/api/kernels/{kernel}");
    loop {
        let m = json_of(server.api(reqwest::Method::GET, &path)).await;
        if m["connections"] == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_gateway_bounds_what_a_client_or_a_kernel_can_make_it_hold() {
    let dir = tempfile::tempdir().unwrap();
    let config = replbox::config::Config {
        socket_queue_bytes: 1 << 20,
        jupyter_sockets_per_token: 2,
        ..server_config(dir.path())
    };
    let sandboxes = engine(config.sandbox.clone()).await;
    let server = TestServer::start(config).await;
    within(400, async {
        let k = json_of(
            server
                .api(reqwest::Method::POST, "/jupyter/api/kernels")
                .json(&json!({"name": "python3", "env": {"KERNEL_USERNAME": "limits"}})),
        )
        .await;
        let id = k["id"].as_str().expect("a kernel id").to_string();

        // A token holds at most 2 channels sockets: the third is our 429.
        let mut a = channels(&server, &id).await.unwrap();
        let mut b = channels(&server, &id).await.unwrap();
        let Err((status, body)) = channels(&server, &id).await else {
            panic!("a third socket was let in");
        };
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "too_many_sockets", "{body}");
        a.close(None).await.unwrap();
        b.close(None).await.unwrap();
        wait_connections(&server, &id, 0).await;

        // A message over the agent's frame limit (16 MiB) is an error in
        // its cell; one over the gateway's (2 MiB) a note; the kernel and
        // its sandbox go on.
        let mut ws = channels(&server, &id).await.unwrap();
        let m = execute(
            &mut ws,
            "display({'text/plain': 'x' * (17 << 20)}, raw=True)",
        )
        .await;
        let said = streams(&outputs(&mut ws, &m).await);
        assert!(said.contains("larger than a sandbox may send"), "{said:?}");
        let m = execute(
            &mut ws,
            "display({'text/plain': 'x' * (3 << 20)}, raw=True)",
        )
        .await;
        let said = streams(&outputs(&mut ws, &m).await);
        assert!(said.contains("larger than the gateway relays"), "{said:?}");
        let m = execute(&mut ws, "print(6*7)").await;
        assert_eq!(streams(&outputs(&mut ws, &m).await), "42\n");

        // A client that stops reading while its kernel floods it (60 MB
        // of output) is not queued more than its budget (1 MiB here): the
        // output past half of it is dropped for this client, which is told
        // so in the cell; the cell's end and the socket still work.
        let flood = execute(
            &mut ws,
            "for i in range(300): display({'text/plain': 'y' * 200000}, raw=True)\n\
             open('/workspace/flood-done', 'w').write('1')",
        )
        .await;
        loop {
            let r = server
                .api(
                    reqwest::Method::GET,
                    "/api/v1/sandboxes/limits/files/flood-done",
                )
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let got = outputs(&mut ws, &flood).await;
        let shown = got
            .iter()
            .filter(|m| m["msg_type"] == "display_data")
            .count();
        let said = streams(&got);
        assert!(
            shown < 300,
            "all {shown} outputs were queued for a client that did not read"
        );
        assert!(
            said.contains("were not sent here: this client fell behind"),
            "{said:?}"
        );
        let m = execute(&mut ws, "print(6*7)").await;
        assert_eq!(streams(&outputs(&mut ws, &m).await), "42\n");

        // Output within the budget on a second socket: every message.
        let mut reader = channels(&server, &id).await.unwrap();
        let m = execute(
            &mut reader,
            "for i in range(20): display({'text/plain': 'z' * 20000}, raw=True)",
        )
        .await;
        let got = outputs(&mut reader, &m).await;
        assert_eq!(
            got.iter()
                .filter(|m| m["msg_type"] == "display_data")
                .count(),
            20
        );
    })
    .await;
    server.stop().await;
    cleanup(&sandboxes).await;
}
