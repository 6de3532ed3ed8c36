//! The one-shot run (`POST /api/v1/run`) takes a warm container from the
//! pool when one is ready, runs one program in it, and removes it: the
//! container is gone after the run, never serves a second one, and the
//! pool refills. With no pool it starts a fresh container.

mod common;

use common::{cleanup, server_config, within, TestServer};
use replbox::sandbox::Sandboxes;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// The pool's containers (by id), once `n` of them are running.
async fn pool_of(sandboxes: &Sandboxes, n: usize) -> HashSet<String> {
    loop {
        let pool: HashSet<String> = sandboxes
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.name.contains("-pool-") && c.running)
            .map(|c| c.id)
            .collect();
        if pool.len() >= n {
            return pool;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the engine no longer has this container.
async fn gone(id: &str) {
    loop {
        let out = tokio::process::Command::new("docker")
            .args(["container", "inspect", id])
            .output()
            .await
            .unwrap();
        if !out.status.success() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-shot run that prints its container's hostname (the first 12
/// characters of the container's id) and 6*7.
async fn run_hostname(server: &TestServer) -> String {
    let r = server
        .api(Method::POST, "/api/v1/run")
        .json(&json!({
            "language": "python",
            "code": "import socket\nprint(socket.gethostname())\nprint(6*7)",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["exitCode"], 0, "{v}");
    let out = v["stdout"].as_str().unwrap();
    let mut lines = out.lines();
    let host = lines.next().unwrap().to_string();
    assert_eq!(lines.next(), Some("42"), "{v}");
    host
}

#[tokio::test]
async fn a_one_shot_run_claims_a_warm_container_once_and_removes_it() {
    let data = tempfile::tempdir().unwrap();
    let mut config = server_config(data.path());
    config.warm_pool = 2;
    let server = TestServer::start(config).await;
    let sandboxes = server.sandboxes().await;
    within(180, async {
        let pool = pool_of(&sandboxes, 2).await;
        let first = run_hostname(&server).await;
        let claimed = pool
            .iter()
            .find(|id| id.starts_with(&first))
            .unwrap_or_else(|| panic!("ran in {first}, not in a pool container {pool:?}"))
            .clone();
        // The throwaway is removed after the run, with its workspace.
        gone(&claimed).await;
        // The next run is another container, never the first again.
        let second = run_hostname(&server).await;
        assert_ne!(second, first, "a one-shot container served a second run");
        // The pool refills: two warm containers again, neither of them a
        // container that ran a one-shot program.
        loop {
            let now = pool_of(&sandboxes, 2).await;
            if !now.iter().any(|id| id.starts_with(&second)) {
                assert!(!now.contains(&claimed));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing of the one-shot runs is left: no volume, no container.
        loop {
            let left = sandboxes
                .list()
                .await
                .unwrap()
                .into_iter()
                .filter(|c| c.name.contains("-r-"))
                .count()
                + sandboxes
                    .list_volumes()
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|v| v.session.starts_with("r-"))
                    .count();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    cleanup(&sandboxes).await;
    server.stop().await;
}

#[tokio::test]
async fn with_no_warm_container_a_one_shot_run_starts_a_fresh_one() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    let sandboxes = server.sandboxes().await;
    within(120, async {
        let host = run_hostname(&server).await;
        // Its container is removed after the run, as a claimed one is.
        loop {
            let left: Vec<_> = sandboxes
                .list()
                .await
                .unwrap()
                .into_iter()
                .filter(|c| c.id.starts_with(&host))
                .collect();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `timeoutMs: 0` is refused clearly, not a program killed at once.
        let r: Value = common::json_of(
            server
                .api(Method::POST, "/api/v1/run")
                .json(&json!({"language": "python", "code": "print(1)", "timeoutMs": 0})),
        )
        .await;
        assert_eq!(r["error"]["code"], "bad_timeout", "{r}");
        // A language alone is a program: main.EXT, which does not exist in
        // a throwaway, so the program (not the request) fails.
        let r = server
            .api(Method::POST, "/api/v1/run")
            .json(&json!({"language": "python"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_ne!(v["exitCode"], 0, "{v}");
        assert!(v["stderr"].as_str().unwrap().contains("main.py"), "{v}");
    })
    .await;
    cleanup(&sandboxes).await;
    server.stop().await;
}
