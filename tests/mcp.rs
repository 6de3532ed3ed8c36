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
