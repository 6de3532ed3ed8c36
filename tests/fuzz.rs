//! The REST API against an outside fuzzer: Schemathesis (PyPI, `make
//! pydeps`) runs against the real server's `/api/v1/openapi.json` with all
//! of its checks, authenticated, with a fixed seed and a bounded number of
//! examples per operation, its stateful phase following the document's
//! links from a created sandbox to every operation taking its taskId. Any
//! failure fails this test with Schemathesis's own report.

mod common;

use common::{cleanup, server_config, within, TestServer};
use std::time::Duration;

/// The seed (the examples per operation are in the settings file).
const SEED: &str = "20261130";

#[tokio::test]
async fn schemathesis_finds_nothing() {
    let data = tempfile::tempdir().unwrap();
    let config = server_config(data.path());
    let server = TestServer::start(config).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = root.join("tests/fuzz/schemathesis.toml");
    // Its own working directory: nothing of Schemathesis's is left in the
    // checkout.
    let work = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("schemathesis");
    cmd.arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args(["--checks", "all"])
        // MCP and the Jupyter gateway are described in the document and
        // tested with their own clients (tests/mcp.rs, tests/jupyter.rs).
        .args(["--exclude-tag", "front-doors"])
        .args(["--header", "Authorization: Bearer test-token"])
        .args(["--seed", SEED])
        .args(["--phases", "coverage,fuzzing,stateful"])
        .args(["--generation-database", "none"])
        // One worker: CPython 3.11's parser is not safe in the threads
        // Schemathesis would otherwise use, and this machine has 2 cores.
        .args(["--workers", "1"])
        .args(["--request-timeout", "150"])
        .arg("--no-color")
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let out = within(480, async {
        match cmd.output().await {
            Ok(out) => out,
            Err(e) => panic!("cannot run `schemathesis` ({e}): run `make pydeps`"),
        }
    })
    .await;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sandboxes = server.sandboxes().await;
    tokio::time::timeout(Duration::from_secs(120), cleanup(&sandboxes))
        .await
        .expect("cleanup within 120 s");
    server.stop().await;
    assert!(
        out.status.success(),
        "Schemathesis found failures (exit {:?}):\n{report}",
        out.status.code()
    );
    // The stateful phase followed the links (`API Links: N covered / M
    // selected / ...`): a created sandbox reached the operations that take
    // its taskId. In 20 random walks the socket's link (a plain GET, which
    // the socket answers 426) is not always among them, so one may be
    // left; the document has them all (tests/newcomer.rs).
    let links = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("API Links:"))
        .unwrap_or_else(|| panic!("no stateful phase in the report:\n{report}"));
    let n: Vec<usize> = links
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        n.len() >= 2 && n[1] >= 9 && n[0] + 1 >= n[1],
        "the stateful phase did not follow the links ({links}):\n{report}"
    );
}
