//! The server through real clients: browsers with cookie jars, WebSockets,
//! the REST API, against the real app on 127.0.0.1:0 and a real engine.

mod common;

use common::{cleanup, engine, json_of, server_config, within, Browser, Got, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

async fn start(dir: &tempfile::TempDir) -> TestServer {
    let config = server_config(dir.path());
    engine(config.sandbox.clone()).await;
    TestServer::start(config).await
}

async fn finish(server: TestServer) {
    let sb = server.sandboxes().await;
    server.stop().await;
    cleanup(&sb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_reads_input_and_a_shell_runs_commands() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let hello = ws.until("hello").await;
        assert_eq!(hello["languages"].as_array().unwrap().len(), 4);

        ws.send(json!({"type": "run", "ref": "p", "language": "python",
            "code": "name = input('name? ')\nprint('hello', name)\nprint('bye')"}))
            .await;
        let started = ws.until("started").await;
        assert_eq!(started["ref"], "p");
        let job = started["job"].as_u64().unwrap();
        let first = ws.until("output").await;
        assert_eq!(first["data"], "name? ");
        assert_eq!(first["seq"], 1);
        ws.send(json!({"type": "stdin", "job": job, "data": "Ada\n"}))
            .await;
        let (rest, exit) = ws.collect(job).await;
        assert_eq!(rest, "hello Ada\nbye\n");
        assert_eq!(exit["code"], 0);
        assert!(exit["durationMs"].as_u64().is_some());
        assert_eq!(exit["truncated"], false);

        // An interactive shell with a pty.
        ws.send(json!({"type": "shell", "rows": 24, "cols": 80}))
            .await;
        let started = ws.until("started").await;
        assert_eq!(started["kind"], "shell");
        let shell = started["job"].as_u64().unwrap();
        ws.send(json!({"type": "stdin", "job": shell, "data": "cd /tmp && pwd\n"}))
            .await;
        let mut seen = String::new();
        while !seen.contains("/tmp\r\n") {
            let v = ws.json().await;
            if v["type"] == "output" && v["job"] == shell {
                seen.push_str(v["data"].as_str().unwrap());
            }
        }
        // Several jobs at once, and an interrupt.
        ws.send(json!({"type": "run", "command": "sleep 30"})).await;
        let sleeper = ws.until("started").await["job"].as_u64().unwrap();
        let (out, _) = ws.run(json!({"command": "echo side by side"})).await;
        assert_eq!(out, "side by side\n");
        ws.send(json!({"type": "signal", "job": sleeper, "signal": "interrupt"}))
            .await;
        let (_, exit) = ws.collect(sleeper).await;
        assert_eq!(exit["signal"], 2);
        assert_eq!(exit["reason"], "interrupted");
        finish(server).await;
    })
    .await
}

/// Every run is answered, however short: a job as quick as `true` used to
/// lose its exit frame when its pump ran before the session recorded it (a
/// busy machine; seen in the bench on two loaded cores), leaving the run
/// without an end. Many in a row give that race its chances; it shows only
/// when the machine is busy (as under `make test`), so this guards more
/// than it proves.
#[tokio::test(flavor = "multi_thread")]
async fn every_short_run_gets_its_exit() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.until("hello").await;
        for i in 0..300 {
            let (_, exit) = ws.run(json!({"argv": ["true"]})).await;
            assert_eq!(exit["type"], "exit", "run {i}: {exit}");
            assert_eq!(exit["code"], 0, "run {i}: {exit}");
        }
        finish(server).await;
    })
    .await;
}

async fn container_of(ws: &mut common::Ws) -> String {
    let (out, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sandbox_per_browser_and_it_survives_a_restart() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;
        let a = Browser::new();
        let b = Browser::new();
        a.visit(&server).await;
        b.visit(&server).await;
        let mut a1 = a.socket(&server, "").await;
        let mut a2 = a.socket(&server, "").await;
        let mut b1 = b.socket(&server, "").await;
        let ca1 = container_of(&mut a1).await;
        let ca2 = container_of(&mut a2).await;
        let cb = container_of(&mut b1).await;
        assert_eq!(ca1, ca2, "two tabs of one browser share a sandbox");
        assert_ne!(ca1, cb, "two browsers get two sandboxes");
        a1.send(json!({"type": "file.write", "path": "notes.txt", "data": "draft", "ref": 1}))
            .await;
        a1.until("file").await;
        // Both tabs open the file; the first to save wins and the second
        // is told, with nothing lost on disk.
        a2.send(json!({"type": "file.read", "path": "notes.txt", "ref": 2}))
            .await;
        let opened = a2.until("file").await;
        assert_eq!(opened["data"], "draft");
        let version = opened["version"].as_str().unwrap().to_string();
        a1.send(json!({"type": "file.write", "path": "notes.txt", "data": "mine", "ifVersion": version, "ref": 3}))
            .await;
        let saved = a1.until("file").await;
        assert_ne!(saved["version"], version);
        a2.send(json!({"type": "file.write", "path": "notes.txt", "data": "theirs", "ifVersion": version, "ref": 4}))
            .await;
        let refused = a2.until("error").await;
        assert_eq!(refused["code"], "file_changed");
        assert_eq!(refused["ref"], 4);
        assert!(refused["message"].as_str().unwrap().contains("changed since it was read"));
        drop((a1, a2, b1));

        let config = server.config.clone();
        server.stop().await;
        let server = TestServer::start(config).await;
        let mut a3 = a.socket(&server, "").await;
        assert_eq!(
            container_of(&mut a3).await,
            ca1,
            "same sandbox after restart"
        );
        let (out, _) = a3.run(json!({"command": "cat notes.txt"})).await;
        assert_eq!(out, "mine");
        finish(server).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sandboxes_expire_and_come_back_with_their_files() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.idle_ttl_secs = 3;
        engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let sb = server.sandboxes().await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.run(json!({"command": "echo kept > f.txt"})).await;
        let first = container_of(&mut ws).await;

        // A job that keeps running is not expired by the idle TTL.
        ws.send(json!({"type": "run", "command": "sleep 5; echo done"}))
            .await;
        let job = ws.until("started").await["job"].as_u64().unwrap();
        let (out, _) = ws.collect(job).await;
        assert_eq!(out, "done\n", "the job outlived the idle TTL");

        // Then, idle: the socket is told and closed; the container is gone.
        let t0 = std::time::Instant::now();
        let mut expired = false;
        loop {
            match ws.recv().await {
                Got::Json(v) if v["type"] == "expired" => expired = true,
                Got::Closed(code) => {
                    assert_eq!(code, Some(4000));
                    break;
                }
                _ => {}
            }
        }
        assert!(expired);
        // The idle TTL (3 s) after the job's end, a second of rounding
        // before, the reaper's pass and 2 s of margin after.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(5200),
            "expired {took:?} after the job ended, with a 3 s idle TTL"
        );
        let live: Vec<_> = sb.list().await.unwrap();
        assert!(live.is_empty(), "expired container removed: {live:?}");
        assert_eq!(sb.list_volumes().await.unwrap().len(), 1, "workspace kept");

        // The next visit finds the files in a new container.
        let mut ws = browser.socket(&server, "").await;
        let hello = ws.until("hello").await;
        assert_eq!(hello["status"], "expired");
        let (out, _) = ws.run(json!({"command": "cat f.txt"})).await;
        assert_eq!(out, "kept\n");
        assert_ne!(container_of(&mut ws).await, first);
        finish(server).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_tab_gets_what_it_missed() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        // A second tab stays, and tells when the job has ended.
        let mut watcher = browser.socket(&server, "").await;
        watcher.until("hello").await;
        let mut ws = browser.socket(&server, "").await;
        ws.send(json!({"type": "run", "command": "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.3; done"}))
            .await;
        let job = ws.until("started").await["job"].as_u64().unwrap();
        let first = ws.until("output").await;
        assert_eq!(first["data"], "line1\n");
        drop(ws); // the tab goes away mid-run

        let (all, exit) = watcher.collect(job).await;
        assert_eq!((all.as_str(), &exit["code"]), ("line1\nline2\nline3\nline4\nline5\nline6\n", &json!(0)));
        let mut ws = browser.socket(&server, "").await;
        let hello = ws.until("hello").await;
        let info = hello["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == job)
            .expect("job listed")
            .clone();
        assert_eq!(info["running"], false, "{info}");
        assert!(info["lastSeq"].as_u64().unwrap() >= 6, "{info}");
        ws.send(json!({"type": "replay", "job": job, "after": 1})).await;
        let (rest, exit) = ws.collect(job).await;
        assert_eq!(rest, "line2\nline3\nline4\nline5\nline6\n");
        assert_eq!(exit["code"], 0);
        finish(server).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_creates_runs_and_deletes_sandboxes() {
    use reqwest::Method;
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;

        let r = server.api_as(None, Method::POST, "/api/v1/sandboxes").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let r = server.api_as(Some("wrong"), Method::POST, "/api/v1/sandboxes").send().await.unwrap();
        assert_eq!(common::refusal(r).await, (401, "unauthorized".into()));

        let r = server.api(Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "task-1", "ttlSeconds": 600, "envVars": {"GREETING": "hi"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["taskId"], "task-1");
        assert!(created["expiresAt"].as_str().unwrap().ends_with('Z'));
        let r = server.api(Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "task-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (409, "already_exists".into()));
        let r = server.api(Method::POST, "/api/v1/sandboxes")
            .json(&json!({"ttlSeconds": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (400, "bad_ttl".into()));

        let ready: Value = json_of(server.api(Method::GET, "/api/v1/sandboxes/task-1?wait=30")).await;
        assert_eq!(ready["status"], "ready");

        let r: Value = json_of(server.api(Method::POST, "/api/v1/sandboxes/task-1/exec")
            .json(&json!({"command": "python3 -c 'print(6*7)'"}))).await;
        assert_eq!(r["stdout"], "42\n");
        assert_eq!(r["exitCode"], 0);
        assert!(r["durationMs"].as_u64().is_some());
        assert_eq!(r["timedOut"], false);
        let r: Value = json_of(server.api(Method::POST, "/api/v1/sandboxes/task-1/exec")
            .json(&json!({"argv": ["sh", "-c", "read x; echo $GREETING $x >&2; exit 3"], "stdin": "there\n"}))).await;
        assert_eq!(r["stderr"], "hi there\n");
        assert_eq!(r["exitCode"], 3);
        let r: Value = json_of(server.api(Method::POST, "/api/v1/sandboxes/task-1/exec")
            .json(&json!({"command": "sleep 10", "timeoutMs": 300}))).await;
        assert_eq!(r["timedOut"], true);

        // Files.
        let r = server.api(Method::PUT, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .body("contents")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = server.api(Method::GET, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .send()
            .await
            .unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(r.text().await.unwrap(), "contents");
        // If-Match: a write over a version the file no longer has is 412.
        let r = server.api(Method::PUT, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .header("if-match", &etag)
            .body("contents 2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
        let r = server.api(Method::PUT, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .header("if-match", &etag)
            .body("stale")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "file_changed");
        let list: Value = json_of(server.api(Method::GET, "/api/v1/sandboxes/task-1/files/src")).await;
        assert_eq!(list["entries"][0]["name"], "a.txt");
        let root: Value = json_of(server.api(Method::GET, "/api/v1/sandboxes/task-1/files")).await;
        assert!(root["entries"].as_array().unwrap().iter().any(|e| e["name"] == "src"));
        let r = server.api(Method::GET, "/api/v1/sandboxes/task-1/files/..%2Fetc%2Fpasswd")
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (400, "path_outside_workspace".into()));
        let r = server.api(Method::DELETE, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = server.api(Method::GET, "/api/v1/sandboxes/task-1/files/src/a.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (404, "not_found".into()));

        // Another token, and a browser, cannot reach it; the token cannot
        // reach a browser's sandbox either.
        let r = server.api_as(Some("other-token"), Method::GET, "/api/v1/sandboxes/task-1")
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (404, "not_found".into()));
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let hello = ws.until("hello").await;
        let browser_task = hello["session"].as_str().unwrap().to_string();
        let r = server.api(Method::GET, &format!("/api/v1/sandboxes/{browser_task}"))
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (404, "not_found".into()));
        let r = browser
            .client
            .get(server.url("/api/v1/sandboxes/task-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (401, "unauthorized".into()));

        // The one-shot run leaves nothing behind (removed right after the
        // answer: waited for, within 30 s).
        let sb = server.sandboxes().await;
        let r: Value = json_of(server.api(Method::POST, "/api/v1/run")
            .json(&json!({"language": "javascript", "code": "let s = require('fs').readFileSync(0, 'utf8'); console.log(s.trim().toUpperCase())", "stdin": "shout"}))).await;
        assert_eq!(r["stdout"], "SHOUT\n", "{r}");
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let left = sb.list().await.unwrap();
                let vols = sb.list_volumes().await.unwrap();
                if left.iter().all(|c| !c.session.starts_with("r-"))
                    && vols.iter().all(|v| !v.session.starts_with("r-"))
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the one-shot run's container and volume are removed");

        let r = server.api(Method::DELETE, "/api/v1/sandboxes/task-1").send().await.unwrap();
        assert_eq!(r.status(), 204);
        let r = server.api(Method::GET, "/api/v1/sandboxes/task-1").send().await.unwrap();
        assert_eq!(common::refusal(r).await, (404, "not_found".into()));
        assert!(sb
            .list_volumes()
            .await
            .unwrap()
            .iter()
            .all(|v| v.session != "t-task-1"));
        finish(server).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir).await;
        let browser = Browser::new();
        browser.visit(&server).await;

        // A foreign Origin is refused.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = server.ws_url("/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", browser.cookie(&server).unwrap().parse().unwrap());
        req.headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        // No cookie: refused too.
        let err = tokio_tungstenite::connect_async(server.ws_url("/ws"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");

        let mut ws = browser.socket(&server, "").await;
        ws.until("hello").await;
        ws.send(json!({"type": "file.read", "path": "../etc/passwd", "ref": 7}))
            .await;
        let e = ws.until("error").await;
        assert_eq!(e["code"], "path_outside_workspace");
        assert_eq!(e["ref"], 7);
        ws.send(json!({"type": "file.write", "path": "/etc/x", "data": ""}))
            .await;
        assert_eq!(ws.until("error").await["code"], "path_outside_workspace");

        // Garbage gets an error frame; the socket stays open.
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        ws.ws.send(Message::Text("{not json".into())).await.unwrap();
        assert_eq!(ws.until("error").await["code"], "bad_frame");
        ws.send(json!({"type": "launch-missiles"})).await;
        assert_eq!(ws.until("error").await["code"], "bad_frame");
        ws.send(json!({"type": "ping"})).await;
        ws.until("pong").await;

        // A 2 MiB frame closes the socket with 1009.
        let big = "x".repeat(2 * 1024 * 1024);
        ws.ws.send(Message::Text(big.into())).await.unwrap();
        loop {
            match ws.recv().await {
                Got::Closed(code) => {
                    assert_eq!(code, Some(1009));
                    break;
                }
                _ => continue,
            }
        }
        // Bad API bodies are JSON errors.
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_json");
        // A body that does not say it is JSON is not read as JSON.
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_json");
        finish(server).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_reports_an_unreachable_engine() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sandbox.docker_socket = "/nonexistent/docker.sock".into();
        let server = TestServer::start(config).await;
        let r = reqwest::get(server.url("/healthz")).await;
        if r.is_err() {
            server.stop().await;
            unreachable!();
        }
        let r = r.unwrap();
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert!(v["reason"].as_str().unwrap().contains("not reachable"));
        // And the API says so with a clear error.
        let (_, v) = server.refused_run().await;
        assert_eq!(v["error"]["code"], "engine_unavailable");
        assert!(r_has_no_docker_text(&v));
        let metrics = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("replbox_jobs_running"), "{metrics}");
        server.stop().await;
    })
    .await
}

fn r_has_no_docker_text(v: &Value) -> bool {
    let s = v.to_string().to_lowercase();
    !s.contains("docker") && !s.contains("socket") && !s.contains("hyper")
}
