//! API sandbox names belong to their token: two tokens may use the same
//! taskId (REST, the Jupyter gateway's KERNEL_USERNAME; MCP in
//! tests/clients/mcp_check.py), no spelling of a taskId reaches another
//! token's sandbox, and sandboxes recorded before names were namespaced
//! keep their files and their running container after the upgrade.

mod common;

use common::{cleanup, engine, json_of, server_config, within, TestServer};
use replbox::sandbox::CreateSpec;
use replbox::sessions::{SandboxRow, Store};
use reqwest::Method;
use serde_json::{json, Value};

const A: &str = "test-token";
const B: &str = "other-token";

/// Creates `task` as `token` and waits until it is ready.
async fn ready(server: &TestServer, token: &str, task: &str) {
    let r = server
        .api_as(Some(token), Method::POST, "/api/v1/sandboxes")
        .json(&json!({ "taskId": task }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "{token} creates {task}: {}",
        r.text().await.unwrap()
    );
    let path = format!("/api/v1/sandboxes/{task}?wait=60");
    let status = json_of(server.api_as(Some(token), Method::GET, &path)).await;
    assert_eq!(status["status"], "ready", "{status}");
}

async fn put(server: &TestServer, token: &str, task: &str, file: &str, text: &str) {
    let path = format!("/api/v1/sandboxes/{task}/files/{file}");
    let r = server
        .api_as(Some(token), Method::PUT, &path)
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "PUT {path}: {}", r.text().await.unwrap());
}

/// The names in the workspace of `token`'s `task`.
async fn names(server: &TestServer, token: &str, task: &str) -> Vec<String> {
    let path = format!("/api/v1/sandboxes/{task}/files");
    let r = server
        .api_as(Some(token), Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path} as {token}");
    let v: Value = r.json().await.unwrap();
    let mut names: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn exec(server: &TestServer, token: &str, task: &str, command: &str) -> Value {
    let path = format!("/api/v1/sandboxes/{task}/exec");
    let r = server
        .api_as(Some(token), Method::POST, &path)
        .json(&json!({ "command": command }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "exec in {task} as {token}");
    r.json().await.unwrap()
}

/// Starts a kernel through the Jupyter gateway as `token`, in the sandbox
/// KERNEL_USERNAME names; answers the status and the body.
async fn kernel(server: &TestServer, token: &str, user: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/jupyter/api/kernels"))
        .header("Authorization", format!("token {token}"))
        .json(&json!({ "name": "python3", "env": { "KERNEL_USERNAME": user } }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The fingerprint namespace (16 hex) of `token` under this data dir.
fn namespace_of(data: &std::path::Path, token: &str) -> String {
    let key = replbox::services::tokens::load_token_key(data).unwrap();
    replbox::services::tokens::token_fingerprint(&key, token)[..16].to_string()
}

#[tokio::test]
async fn two_tokens_use_the_same_task_id_each_its_own() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    within(240, async {
        // REST: the same taskId for both tokens, two sandboxes.
        ready(&server, A, "shared").await;
        ready(&server, B, "shared").await;
        put(&server, A, "shared", "a.txt", "from A\n").await;
        put(&server, B, "shared", "b.txt", "from B\n").await;
        assert_eq!(names(&server, A, "shared").await, ["a.txt"]);
        assert_eq!(names(&server, B, "shared").await, ["b.txt"]);
        let out = exec(&server, B, "shared", "cat *.txt").await;
        assert_eq!(out["stdout"], "from B\n", "{out}");
        // Taking it again is the token's own conflict, with its name.
        let r = server
            .api_as(Some(B), Method::POST, "/api/v1/sandboxes")
            .json(&json!({ "taskId": "shared" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "already_exists");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"shared\""), "{message}");
        // B deleting its own leaves A's alone.
        let r = server
            .api_as(Some(B), Method::DELETE, "/api/v1/sandboxes/shared")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(names(&server, A, "shared").await, ["a.txt"]);

        // Jupyter: B's kernel for KERNEL_USERNAME=jovyan, a name A took
        // first, runs in a sandbox of B's own (it was a 403 before).
        ready(&server, A, "jovyan").await;
        put(&server, A, "jovyan", "mine.txt", "A's\n").await;
        let (status, body) = kernel(&server, B, "jovyan").await;
        assert_eq!(status, 201, "{body}");
        // (The kernel may have made its dotfiles there: HOME is /workspace.)
        assert!(!names(&server, B, "jovyan")
            .await
            .contains(&"mine.txt".into()));
        assert_eq!(names(&server, A, "jovyan").await, ["mine.txt"]);
        let (status, body) = kernel(&server, A, "jovyan").await;
        assert_eq!(status, 201, "{body}");
        let listed = |token: &'static str| {
            reqwest::Client::new()
                .get(server.url("/jupyter/api/kernels"))
                .header("Authorization", format!("token {token}"))
        };
        assert_eq!(json_of(listed(A)).await.as_array().unwrap().len(), 1);
        assert_eq!(json_of(listed(B)).await.as_array().unwrap().len(), 1);
    })
    .await;
    let sandboxes = server.sandboxes().await;
    server.stop().await;
    cleanup(&sandboxes).await;
}

#[tokio::test]
async fn no_spelling_of_a_task_id_reaches_another_tokens_sandbox() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    within(240, async {
        ready(&server, A, "secret-task").await;
        put(&server, A, "secret-task", "secret.txt", "A's secret\n").await;
        let ns = namespace_of(data.path(), A);
        let spellings = [
            "secret-task".to_string(),
            "Secret-Task".into(),
            "SECRET-TASK".into(),
            "%73ecret-task".into(),
            "secret-task.".into(),
            "secret-task%20".into(),
            "%20secret-task".into(),
            "secret-task%00".into(),
            "t-secret-task".into(),
            format!("{ns}-secret-task"),
            format!("t-{ns}-secret-task"),
            format!("t-{ns}-secret-task%2F..%2F"),
            "..%2Fsecret-task".into(),
            "r-secret-task".into(),
        ];
        for task in &spellings {
            let base = format!("/api/v1/sandboxes/{task}");
            for (method, path) in [
                (Method::GET, base.clone()),
                (Method::GET, format!("{base}/files")),
                (Method::GET, format!("{base}/files/secret.txt")),
                (Method::PUT, format!("{base}/files/secret.txt")),
                (Method::POST, format!("{base}/exec")),
                (Method::DELETE, base.clone()),
            ] {
                let mut req = server.api_as(Some(B), method.clone(), &path);
                if method == Method::POST {
                    req = req.json(&json!({ "command": "cat secret.txt" }));
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                assert!(
                    status == 404 || status == 400,
                    "{method} {path} as another token: {status} {text}"
                );
                assert!(!text.contains("A's secret"), "{method} {path}: {text}");
            }
        }
        // Through the gateway, a KERNEL_USERNAME spelled with A's namespace
        // is a name in B's own namespace: a new, empty sandbox of B's.
        for user in [format!("{ns}-secret-task"), format!("t-{ns}-secret-task")] {
            let (status, body) = kernel(&server, B, &user).await;
            assert_eq!(status, 201, "{user}: {body}");
            let theirs = names(&server, B, &user).await;
            assert!(!theirs.contains(&"secret.txt".into()), "{user}: {theirs:?}");
        }
        let (status, _) = kernel(&server, B, "../secret-task").await;
        assert_eq!(status, 400);
        // A's sandbox is as A left it.
        assert_eq!(names(&server, A, "secret-task").await, ["secret.txt"]);
        let out = exec(&server, A, "secret-task", "cat secret.txt").await;
        assert_eq!(out["stdout"], "A's secret\n");
    })
    .await;
    let sandboxes = server.sandboxes().await;
    server.stop().await;
    cleanup(&sandboxes).await;
}

#[tokio::test]
async fn sandboxes_named_before_namespacing_keep_their_files_and_container() {
    let data = tempfile::tempdir().unwrap();
    let config = server_config(data.path());
    let sandboxes = engine(config.sandbox.clone()).await;
    within(240, async {
        // What an older server left: a record `t-legacy` (no volume name on
        // record), its running container and its volume, named the old way.
        let key = replbox::services::tokens::load_token_key(data.path()).unwrap();
        let fingerprint = replbox::services::tokens::token_fingerprint(&key, A);
        let handle = sandboxes
            .create(&CreateSpec {
                session: "t-legacy".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        handle
            .write_file("old.txt".into(), b"written before the upgrade\n".to_vec())
            .await
            .unwrap();
        let container = handle.container_id().to_string();
        drop(handle);
        {
            let store = Store::open(data.path()).await.unwrap();
            let now = chrono::Utc::now().timestamp();
            store
                .upsert(&SandboxRow {
                    owner: "t-legacy".into(),
                    kind: "api".into(),
                    token_hash: Some(fingerprint),
                    container_id: Some(container.clone()),
                    created_at: now,
                    container_at: now,
                    last_active: now,
                    idle_ttl_secs: 3600,
                    image: None,
                    env: "[]".into(),
                    expired_at: None,
                    workspace_volume: None,
                })
                .await
                .unwrap();
            store.db().close().await;
        }

        let server = TestServer::start(config.clone()).await;
        // Known by its taskId (idle until used: a restart re-attaches on use).
        let status = json_of(server.api_as(Some(A), Method::GET, "/api/v1/sandboxes/legacy")).await;
        assert_eq!(status["taskId"], "legacy", "{status}");
        assert_eq!(names(&server, A, "legacy").await, ["old.txt"]);
        let out = exec(&server, A, "legacy", "cat old.txt").await;
        assert_eq!(out["stdout"], "written before the upgrade\n", "{out}");
        // The same container: re-attached, not replaced.
        let live: Vec<String> = sandboxes
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.id)
            .collect();
        assert_eq!(live, vec![container.clone()]);
        // The other token neither sees it nor is blocked by its name.
        let r = server
            .api_as(Some(B), Method::GET, "/api/v1/sandboxes/legacy")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        ready(&server, B, "legacy").await;
        assert!(names(&server, B, "legacy").await.is_empty());
        server.stop().await;

        // And after another restart, still the same.
        let server = TestServer::start(config.clone()).await;
        assert_eq!(names(&server, A, "legacy").await, ["old.txt"]);
        let r = server
            .api_as(Some(A), Method::DELETE, "/api/v1/sandboxes/legacy")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let left: Vec<String> = sandboxes
            .list_volumes()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert!(
            !left.contains(&sandboxes.volume_name("t-legacy")),
            "the old volume went with its sandbox: {left:?}"
        );
        server.stop().await;
    })
    .await;
    cleanup(&sandboxes).await;
}
