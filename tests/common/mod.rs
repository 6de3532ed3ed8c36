//! Shared set-up for the integration tests: a real Docker engine, the
//! default image, and the static agent, each checked with a clear message.
#![allow(dead_code)]

use replbox::config::{Config, SandboxConfig};
use replbox::sandbox::Sandboxes;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub const AGENT: &str = "target/x86_64-unknown-linux-gnu/release/replbox-agent";

/// A config whose containers and volumes carry a prefix of this test's own.
pub fn sandbox_config() -> SandboxConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let agent = root.join(AGENT);
    assert!(
        agent.exists(),
        "the static agent is missing at {}: run `make agent` (or `make test`, which builds it)",
        agent.display()
    );
    SandboxConfig {
        agent_path: agent,
        name_prefix: format!("rbt-{:08x}", rand::random::<u32>()),
        ..SandboxConfig::default()
    }
}

pub fn config() -> Config {
    Config {
        sandbox: sandbox_config(),
        ..Config::default()
    }
}

/// The engine, or a failure that says how to start it.
pub async fn engine(config: SandboxConfig) -> Sandboxes {
    let sandboxes = Sandboxes::new(config.clone()).expect("docker client");
    if sandboxes.ping().await.is_err() {
        panic!(
            "no Docker engine answers at {}. Start one: `make docker` (or `sudo dockerd --bridge=none --iptables=false --ip-forward=false &`)",
            config.docker_socket
        );
    }
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", &config.image])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "the sandbox image {} is missing: run `make image`",
        config.image
    );
    sandboxes
}

/// Removes every container and volume carrying this test's prefix.
pub async fn cleanup(sandboxes: &Sandboxes) {
    for c in sandboxes.list().await.unwrap_or_default() {
        let _ = sandboxes.remove(&c.id).await;
    }
    for v in sandboxes.list_volumes().await.unwrap_or_default() {
        let _ = sandboxes.remove_volume(&v.session).await;
    }
}

/// Every async test runs under a timeout.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"))
}
