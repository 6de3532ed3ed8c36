//! The MCP front door with the official MCP Python SDK as the client
//! (tests/clients/mcp_check.py): auth, the tools and their schemas, each
//! tool, errors as tool results, paths outside the workspace.

mod common;

use common::*;
use std::process::Stdio;

#[tokio::test]
async fn the_official_mcp_client_uses_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path());
    let sandboxes = engine(config.sandbox.clone()).await;
    let server = TestServer::start(config).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mcp_check.py");
    let out = within(
        240,
        tokio::process::Command::new("python3")
            .args([script, &server.url(""), "test-token", "other-token"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python3 runs (`make pydeps` installs the MCP SDK)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("every check passed"),
        "the MCP client's checks failed:\n{stdout}\n{stderr}"
    );
    server.stop().await;
    cleanup(&sandboxes).await;
}

/// What rmcp itself refuses (a wrong method, Accept or Content-Type, a
/// body past the limit) is our JSON error, as raw HTTP clients see it.
#[tokio::test]
async fn refusals_at_mcp_are_our_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(dir.path())).await;
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    })
    .to_string();
    let both = "application/json, text/event-stream";
    let huge = "x".repeat(25 << 20);
    let cases: Vec<(reqwest::Method, &str, &str, String, u16, &str)> = vec![
        (
            reqwest::Method::GET,
            both,
            "application/json",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            both,
            "application/json",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::POST,
            "text/plain",
            "application/json",
            init.clone(),
            406,
            "not_acceptable",
        ),
        (
            reqwest::Method::POST,
            both,
            "text/plain",
            init.clone(),
            415,
            "not_json",
        ),
        (
            reqwest::Method::POST,
            both,
            "application/json",
            huge,
            413,
            "body_too_large",
        ),
    ];
    within(120, async {
        for (method, accept, content_type, body, status, code) in cases {
            let what = format!("{method} Accept: {accept}, Content-Type: {content_type}");
            let r = server
                .api(method.clone(), "/mcp")
                .header("accept", accept)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{what}");
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ct.starts_with("application/json"), "{what}: {ct}");
            if status == 405 {
                assert_eq!(r.headers()["allow"], "POST", "{what}");
            }
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{what}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{v}"
            );
        }
        // A well-formed request still reaches rmcp.
        let r = server
            .api(reqwest::Method::POST, "/mcp")
            .header("accept", both)
            .header("content-type", "application/json")
            .body(init)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
    server.stop().await;
}
