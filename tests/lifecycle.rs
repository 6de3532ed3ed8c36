//! Server lifecycle: start-up recovery, maximum lifetime, SIGTERM, the
//! OpenAPI document against the real routes, metrics.

mod common;

use common::{cleanup, engine, server_config, within, Browser, Got, TestServer};
use replbox::sandbox::CreateSpec;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn startup_removes_what_no_session_owns() {
    within(90, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        // This deployment's (only its own are the server's to remove).
        config.sandbox.deployment = Some(format!("lifecycle-{:08x}", rand::random::<u32>()));
        let sb = engine(config.sandbox.clone()).await;
        // A container and a volume from a crash, owned by nobody.
        let orphan = sb
            .create(&CreateSpec {
                session: "b-orphan".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        sb.create_container(&CreateSpec {
            session: "b-stopped".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(sb.list().await.unwrap().len(), 2);
        drop(orphan);
        let server = TestServer::start(config).await;
        reqwest::get(server.url("/healthz")).await.unwrap();
        let mut left = sb.list().await.unwrap();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = sb.list().await.unwrap();
        }
        assert!(left.is_empty(), "orphans removed: {left:?}");
        assert!(
            sb.list_volumes().await.unwrap().is_empty(),
            "orphan volumes removed"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_sandbox_still_ends_at_its_maximum_lifetime() {
    within(90, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.idle_ttl_secs = 600;
        config.max_lifetime_secs = 4;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.send(json!({"type": "run", "command": "sleep 60"})).await;
        let expiry = ws.until("expiry").await;
        let left = expiry["expiresInSecs"].as_u64().unwrap();
        assert!(left <= 4, "{expiry}");
        let t0 = std::time::Instant::now();
        loop {
            if let Got::Closed(code) = ws.recv().await {
                assert_eq!(code, Some(4000));
                break;
            }
        }
        // When the expiry frame said, busy as it is: a second's rounding
        // before, the reaper's pass (200 ms here) and 2 s of margin for the
        // removal on a loaded machine after.
        let took = t0.elapsed();
        assert!(
            took + Duration::from_secs(1) >= Duration::from_secs(left)
                && took < Duration::from_secs(left) + Duration::from_millis(2200),
            "closed after {took:?}, {left} s announced"
        );
        assert!(sb.list().await.unwrap().is_empty());
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_sockets_and_exits_cleanly() {
    within(90, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let (mut child, server) = common::spawn_server(&config, &[]);
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.until("hello").await;
        common::signal(&child, 15);
        loop {
            if let Got::Closed(code) = ws.recv().await {
                assert_eq!(code, Some(1001));
                break;
            }
        }
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served_and_metrics_count() {
    within(90, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let doc: Value = reqwest::get(server.url("/api/v1/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = reqwest::Client::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                // MCP and the Jupyter gateway speak their own protocols,
                // tested with their own clients (tests/mcp.rs, jupyter.rs).
                if op["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("front-doors")))
                {
                    continue;
                }
                let url = server.url(&path.replace("{taskId}", "nope").replace("{path}", "a.txt"));
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let r = client
                    .request(m, &url)
                    .bearer_auth("test-token")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                // A route that exists answers with JSON (an error about the
                // missing sandbox, or a result); an unrouted one would be
                // 404 `no such API route` or a 405 `method_not_allowed`.
                assert_ne!(status, 405, "{method} {path}");
                assert!(
                    !body.contains("no such API route"),
                    "{method} {path}: {body}"
                );
                assert!(status < 500, "{method} {path}: {status} {body:?}");
                assert!(
                    serde_json::from_str::<Value>(&body).is_ok(),
                    "{method} {path}: {status} {body:?}"
                );
            }
        }
        // Metrics count what happened.
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.run(json!({"command": "echo counted"})).await;
        let text = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let streamed = text
            .lines()
            .find(|l| l.starts_with("replbox_streamed_bytes_total"))
            .expect("streamed bytes metric");
        assert!(!streamed.ends_with(" 0"), "{streamed}");
        assert!(text.contains("replbox_job_start_seconds_bucket"), "{text}");
        assert!(text.contains("replbox_live_sandboxes"));
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_locked_down_and_the_workspace_downloads_as_a_zip() {
    within(90, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let browser = Browser::new();
        let page = browser.client.get(server.url("/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let set_cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
            "{set_cookie}"
        );
        let html = page.text().await.unwrap();
        let js = html
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a script tag")
            .to_string();
        let asset = browser
            .client
            .get(server.url(&js))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{js}");
        assert_eq!(asset.headers()["content-type"], "text/javascript");
        assert!(asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert_eq!(asset.headers()["content-encoding"], "gzip");
        let missing = browser
            .client
            .get(server.url("/assets/nope.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        // Files written over the socket come back in the zip.
        let mut ws = browser.socket(&server, "").await;
        ws.until("hello").await;
        for (path, data) in [("a.txt", "alpha"), ("dir/b.txt", "beta")] {
            ws.send(json!({"type": "file.write", "path": path, "data": data, "ref": path}))
                .await;
            ws.until("file").await;
        }
        let zip = browser
            .client
            .get(server.url("/workspace.zip"))
            .send()
            .await
            .unwrap();
        assert_eq!(zip.headers()["content-type"], "application/zip");
        let bytes = zip.bytes().await.unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let mut names: Vec<String> = archive.file_names().map(String::from).collect();
        names.sort();
        assert_eq!(names, ["a.txt", "dir/b.txt"]);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("dir/b.txt").unwrap(), &mut text)
            .unwrap();
        assert_eq!(text, "beta");

        // A file too large for one read is refused by name, never left out.
        ws.run(json!({"command": "head -c 9000000 /dev/zero > big.bin"}))
            .await;
        let refused = browser
            .client
            .get(server.url("/workspace.zip"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 413);
        let e: Value = refused.json().await.unwrap();
        assert_eq!(e["error"]["code"], "file_too_large", "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("big.bin is larger than 8 MiB"),
            "{e}"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
