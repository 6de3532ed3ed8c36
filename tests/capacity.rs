//! The warm pool, the cap on live sandboxes with its queue, early expiry of
//! idle sandboxes, and the limit on new sessions per address.

mod common;

use common::{cleanup, engine, server_config, within, Browser, Got, TestServer};
use serde_json::json;
use std::time::Duration;

async fn pool_containers(sb: &replbox::sandbox::Sandboxes) -> Vec<String> {
    sb.list()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name.contains("-pool-"))
        .map(|c| c.id)
        .collect()
}

async fn wait_pool(sb: &replbox::sandbox::Sandboxes, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let ids = pool_containers(sb).await;
        if ids.len() >= n {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the pool did not reach {n} containers");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_browser_claims_a_warm_container_and_restarts_do_not_leak_it() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.warm_pool = 2;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config.clone()).await;
        let warm = wait_pool(&sb, 2).await;

        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (host, _) = ws
            .run(json!({"command": "cat /etc/hostname; echo mine > f.txt"}))
            .await;
        let host = host.trim().to_string();
        assert!(
            warm.iter().any(|id| id.starts_with(&host)),
            "{host} is one of {warm:?}"
        );
        // The pool refills.
        let refilled = wait_pool(&sb, 2).await;
        assert!(!refilled.iter().any(|id| id.starts_with(&host)));

        // A restart removes the unclaimed ones, keeps the claimed one.
        drop(ws);
        server.stop().await;
        let server = TestServer::start(config).await;
        reqwest::get(server.url("/healthz")).await.unwrap();
        let after = wait_pool(&sb, 2).await;
        for id in &refilled {
            assert!(
                !after.contains(id),
                "an unclaimed container survived the restart"
            );
        }
        let mut ws = browser.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat /etc/hostname f.txt"})).await;
        assert_eq!(
            out,
            format!("{host}\nmine\n"),
            "the same sandbox, not a second claim"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_cap_browsers_queue_and_nobody_loses_work() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.max_sandboxes = 2;
        config.evict_grace_secs = 8;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;

        let mut tabs = Vec::new();
        for name in ["a", "b"] {
            let browser = Browser::new();
            browser.visit(&server).await;
            let mut ws = browser.socket(&server, "").await;
            ws.run(json!({"command": format!("echo {name}-work > work.txt")}))
                .await;
            tabs.push((browser, ws));
        }
        // The API is told to come back later.
        let (headers, v) = server.refused_run().await;
        assert!(headers.contains_key("retry-after"));
        assert_eq!(v["error"]["code"], "capacity_full");

        // A third browser waits in line, then gets the longest-idle sandbox's
        // place once that one is past its grace period.
        let c = Browser::new();
        c.visit(&server).await;
        let mut cws = c.socket(&server, "").await;
        let queued = cws.until("queued").await;
        assert_eq!(queued["position"], 1);
        loop {
            let v = cws.json().await;
            if v["type"] == "status" && v["status"] == "ready" {
                break;
            }
        }
        // One of a and b (the longer idle) was expired early; its socket heard.
        let (b, mut bws) = tabs.pop().unwrap();
        let (a, mut aws) = tabs.pop().unwrap();
        async fn closed(ws: &mut common::Ws) -> Option<u16> {
            loop {
                if let Got::Closed(code) = ws.recv().await {
                    return code;
                }
            }
        }
        let (gone, gone_name, _kept) = tokio::select! {
            code = closed(&mut aws) => { assert_eq!(code, Some(4000)); (a, "a", b) }
            code = closed(&mut bws) => { assert_eq!(code, Some(4000)); (b, "b", a) }
        };
        assert!(sb.list().await.unwrap().len() <= 2);
        let (out, _) = cws.run(json!({"command": "echo c runs"})).await;
        assert_eq!(out, "c runs\n");

        // It comes back and waits its turn; the other, idle longest now,
        // makes room; its work is all there.
        let mut ws = gone.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat work.txt"})).await;
        assert_eq!(out, format!("{gone_name}-work\n"));
        assert!(sb.list().await.unwrap().len() <= 2);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn new_sessions_per_address_are_limited() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.new_sessions_per_minute = 3;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let known = Browser::new();
        known.visit(&server).await;
        // X-Forwarded-For from a client that is not a trusted proxy is
        // ignored: it cannot dodge the limit by naming other addresses.
        let mut codes = Vec::new();
        for i in 0..4 {
            codes.push(new_browser_from(&server, &format!("203.0.113.{i}")).await);
        }
        assert_eq!(codes, [200, 200, 429, 429]);
        // A browser that has its session is not limited.
        known.visit(&server).await;
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

/// A new browser's first visit with that X-Forwarded-For: the status.
async fn new_browser_from(server: &TestServer, forwarded_for: &str) -> u16 {
    Browser::new()
        .client
        .get(server.url("/"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.new_sessions_per_minute = 2;
        // The test's requests come from 127.0.0.1, as from an nginx in front.
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(new_browser_from(&server, "198.51.100.1, 203.0.113.1").await);
        }
        assert_eq!(codes, [200, 200, 429], "one student over the limit");
        // A classmate behind the same proxy is not held back by it, and
        // the left-most entry (the client's own claim) is not believed.
        assert_eq!(
            new_browser_from(&server, "203.0.113.1, 203.0.113.2").await,
            200
        );
        assert_eq!(new_browser_from(&server, "203.0.113.2").await, 200);
        assert_eq!(new_browser_from(&server, "203.0.113.2").await, 429);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
