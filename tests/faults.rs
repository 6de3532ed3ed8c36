//! Faults: the server killed with SIGKILL mid-run, and the Docker engine
//! stopped and started again under a running server (with `--live-restore`
//! and the agents on their direct sockets, the sandboxes keep running and
//! answering meanwhile). Run it alone: it stops the engine. One test, in phases,
//! because stopping the engine would hurt any test running beside it (cargo
//! runs test binaries one after another).

mod common;

use common::{cleanup, engine, json_of, server_config, signal, spawn_server, within, Browser};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_and_the_engine_can_fail_and_nothing_is_lost() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;

        // --- SIGKILL during a run.
        let (mut child, server) = spawn_server(
            &config,
            &[
                ("REPLBOX_WARM_POOL", "0"),
                ("REPLBOX_REAP_INTERVAL_MS", "200"),
            ],
        );
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (host, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
        ws.send(json!({"type": "run", "command": "sleep 1; echo finished > late.txt"}))
            .await;
        ws.until("started").await;
        signal(&child, 9);
        child.wait().unwrap();

        let (mut child, server) = spawn_server(
            &config,
            &[
                ("REPLBOX_WARM_POOL", "0"),
                ("REPLBOX_REAP_INTERVAL_MS", "200"),
            ],
        );
        let mut ws = browser.socket(&server, "").await;
        let (again, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
        assert_eq!(again, host, "the same browser reaches the same sandbox");
        // The run goes on while the server is down: its file appears.
        let t = Instant::now();
        loop {
            let (late, _) = ws.run(json!({"command": "cat late.txt 2>/dev/null"})).await;
            if late == "finished\n" {
                break;
            }
            assert_eq!(late, "", "late.txt");
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the run did not finish while the server was down"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nothing orphaned: one container and one volume, the browser's
        // (start-up's removal of orphans may still be going: wait for it).
        let t = Instant::now();
        loop {
            let containers = sb.list().await.unwrap();
            if containers.len() == 1 {
                assert!(containers[0].id.starts_with(host.trim()), "{containers:?}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "orphaned: {containers:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sb.list_volumes().await.unwrap().len(), 1);

        // --- The engine stops and starts again under the running server.
        // Needs: the engine at REPLBOX_DOCKER_SOCKET started by
        // scripts/ensure-docker.sh (its pid file: REPLBOX_DOCKERD_PIDFILE)
        // with --live-restore, nothing else using it meanwhile, and the
        // default socket transport (REPLBOX_AGENT_TRANSPORT unset). With
        // live restore the containers keep running; on their direct
        // sockets the server keeps talking to them while dockerd is away.
        let live = Command::new("docker")
            .args(["info", "--format", "{{.LiveRestoreEnabled}}"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&live.stdout).trim(),
            "true",
            "this test needs dockerd with --live-restore: restart the engine with scripts/ensure-docker.sh when nothing runs on it"
        );
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "survivor"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let api_host: Value = json_of(
            server
                .api(reqwest::Method::POST, "/api/v1/sandboxes/survivor/exec")
                .json(&json!({"command": "cat /etc/hostname; echo kept > kept.txt"})),
        )
        .await;
        let api_host = api_host["stdout"].as_str().unwrap().to_string();
        assert_eq!(api_host.len(), 13, "{api_host:?}");
        // A run that goes on across the engine's restart.
        ws.send(json!({"type": "run", "command": "sleep 2; echo through"}))
            .await;
        let through = ws.until("started").await["job"].as_u64().unwrap();
        // Only this engine's dockerd (another may serve others beside it):
        // the one its pid file names, as scripts/ensure-docker.sh starts it.
        let pidfile = std::env::var("REPLBOX_DOCKERD_PIDFILE")
            .unwrap_or_else(|_| "/var/run/docker.pid".into());
        let dockerd = std::fs::read_to_string(&pidfile).unwrap_or_else(|e| {
            panic!(
                "{pidfile}: {e} (set REPLBOX_DOCKERD_PIDFILE to the pid file of the engine at {})",
                config.sandbox.docker_socket
            )
        });
        let dockerd: i32 = dockerd.trim().parse().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &dockerd.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {dockerd}");
        let t = Instant::now();
        while engine_answers().await {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "dockerd did not stop"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        while std::path::Path::new(&format!("/proc/{dockerd}")).exists() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "dockerd {dockerd} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let health = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 503);
        let v: Value = health.json().await.unwrap();
        assert!(
            v["reason"].as_str().unwrap().contains("not reachable"),
            "/healthz says why: {v}"
        );
        // A new sandbox needs the engine: 503 `engine_unavailable` with
        // `Retry-After` (whole seconds), as the README says.
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "newcomer"}))
            .send()
            .await
            .unwrap();
        // (Its container starts in the background: its first exec says.)
        let r = if r.status() == 201 {
            server
                .api(reqwest::Method::POST, "/api/v1/sandboxes/newcomer/exec")
                .json(&json!({"command": "echo hi"}))
                .send()
                .await
                .unwrap()
        } else {
            r
        };
        assert_eq!(r.status(), 503);
        let retry = r
            .headers()
            .get("retry-after")
            .expect("a 503 engine_unavailable without Retry-After")
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        assert!(retry > 0, "Retry-After: {retry}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "engine_unavailable", "{v}");
        assert!(r_clear(&v));
        // The engine is away, the sandboxes are not: the run started before
        // ends with its output, and both sandboxes answer new runs.
        let (out, exit) = ws.collect(through).await;
        assert_eq!((out.as_str(), &exit["code"]), ("through\n", &json!(0)));
        let (out, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
        assert_eq!(out, host, "the browser's sandbox answers while the engine is down");
        let r: Value = json_of(
            server
                .api(reqwest::Method::POST, "/api/v1/sandboxes/survivor/exec")
                .json(&json!({"command": "cat /etc/hostname kept.txt"})),
        )
        .await;
        assert_eq!(
            r["stdout"].as_str().unwrap_or_else(|| panic!("{r}")),
            format!("{api_host}kept\n"),
            "the API sandbox answers while the engine is down"
        );

        let status = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/ensure-docker.sh"
        ))
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "dockerd restarts");
        let t = Instant::now();
        loop {
            let h = reqwest::get(server.url("/healthz")).await.unwrap();
            if h.status() == 200 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "healthz did not recover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The same containers, still running, still answering.
        let (out, _) = ws
            .run(json!({"command": "cat /etc/hostname late.txt"}))
            .await;
        assert_eq!(out, format!("{host}finished\n"), "the same sandbox, its files");
        let r: Value = json_of(
            server
                .api(reqwest::Method::POST, "/api/v1/sandboxes/survivor/exec")
                .json(&json!({"command": "cat /etc/hostname kept.txt"})),
        )
        .await;
        assert_eq!(r["stdout"], format!("{api_host}kept\n"), "{r}");
        let running: Vec<_> = sb
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running)
            .collect();
        for h in [host.trim(), api_host.trim()] {
            assert!(
                running.iter().any(|c| c.id.starts_with(h)),
                "{h} in {running:?}"
            );
        }

        signal(&child, 15);
        child.wait().unwrap();
        cleanup(&sb).await;
    })
    .await
}

fn r_clear(v: &Value) -> bool {
    let m = v["error"]["message"].as_str().unwrap_or("").to_lowercase();
    !m.contains("docker") && !m.contains("socket") && m.len() > 20
}
