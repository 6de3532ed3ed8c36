//! Two deployments on one engine: two real servers on 127.0.0.1:0, each
//! with its own store, the same name prefix and the same workspace root.
//! Starting or restarting one never removes the other's containers,
//! volumes or workspaces, and each still removes its own orphans.

mod common;

use common::{cleanup, engine, server_config, within, Browser, TestServer};
use replbox::sandbox::{CreateSpec, Sandboxes};
use serde_json::json;

async fn container_of(ws: &mut common::Ws) -> String {
    let (out, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
    out.trim().to_string()
}

/// Makes a sandbox straight through the backend, as `deployment` (the
/// store knows nothing of it): an orphan, or (`None`) one from before
/// deployment labels.
async fn orphan(server: &TestServer, deployment: Option<&str>, session: &str) -> String {
    let mut config = server.config.sandbox.clone();
    config.deployment = deployment.map(str::to_string);
    let sb = Sandboxes::new(config).unwrap();
    let handle = sb
        .create(&CreateSpec {
            session: session.into(),
            expires_at: i64::MAX / 2,
            ..Default::default()
        })
        .await
        .expect("an orphan sandbox");
    handle.container_id().to_string()
}

/// Starts the real app and waits until it answers (its start-up recovery
/// is done before it serves).
async fn start(config: &replbox::config::Config) -> TestServer {
    let server = TestServer::start(config.clone()).await;
    let r = reqwest::get(server.url("/healthz")).await.unwrap();
    assert!(r.status().is_success(), "healthz: {}", r.status());
    server
}

struct Seen {
    containers: Vec<(String, bool)>,
    volumes: Vec<String>,
}

async fn seen(sb: &Sandboxes) -> Seen {
    Seen {
        containers: sb
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.running))
            .collect(),
        volumes: sb
            .list_volumes()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect(),
    }
}

impl Seen {
    fn runs(&self, id_or_short: &str) -> bool {
        self.containers
            .iter()
            .any(|(id, running)| id.starts_with(id_or_short) && *running)
    }
    fn has_container(&self, id: &str) -> bool {
        self.containers.iter().any(|(c, _)| c == id)
    }
    fn has_volume(&self, name: &str) -> bool {
        self.volumes.iter().any(|v| v == name)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deployments_on_one_engine_leave_each_other_alone() {
    within(240, async {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut config_a = server_config(dir_a.path());
        // A is named by REPLBOX_DEPLOYMENT; B takes the id kept in its data
        // dir. Same prefix, same workspace root: only the label tells.
        let id_a = format!("staging-{:08x}", rand::random::<u32>());
        config_a.sandbox.deployment = Some(id_a.clone());
        let mut config_b = server_config(dir_b.path());
        config_b.sandbox.name_prefix = config_a.sandbox.name_prefix.clone();
        let sb = engine(config_a.sandbox.clone()).await;
        let root = config_a.sandbox.workspace_root.clone();
        let image = |volume: &str| root.join(format!("{volume}.img"));
        let quotas = sb.quota_mb().is_some();

        let a = start(&config_a).await;
        let b = start(&config_b).await;

        let (browser_a, browser_b) = (Browser::new(), Browser::new());
        browser_a.visit(&a).await;
        browser_b.visit(&b).await;
        // B answered: it has read (or made) its id.
        let id_b = std::fs::read_to_string(dir_b.path().join("deployment"))
            .expect("B keeps its deployment id in its data dir")
            .trim()
            .to_string();
        assert_ne!(id_a, id_b);
        let mut ws_a = browser_a.socket(&a, "").await;
        let mut ws_b = browser_b.socket(&b, "").await;
        let ca = container_of(&mut ws_a).await;
        let cb = container_of(&mut ws_b).await;
        let (out, _) = ws_a
            .run(json!({"command": "echo a-work > a.txt && cat a.txt"}))
            .await;
        assert_eq!(out, "a-work\n");

        // Orphans: one of each deployment's, one from before the label.
        let orphan_a = orphan(&a, Some(&id_a), "orphan-a").await;
        let orphan_b = orphan(&b, Some(&id_b), "orphan-b").await;
        let legacy = orphan(&a, None, "legacy").await;
        let vol = |s: &str| sb.volume_name(s);
        let before = seen(&sb).await;
        for (id, what) in [
            (&orphan_a, "A's orphan"),
            (&orphan_b, "B's orphan"),
            (&legacy, "unlabelled"),
        ] {
            assert!(before.runs(id), "{what} runs");
        }
        if quotas {
            assert!(image(&vol("orphan-a")).exists());
            assert!(image(&vol("orphan-b")).exists());
        }

        // B restarts: its own orphan goes, nothing of A's (nor the
        // unlabelled one) is touched, and A's user keeps working.
        drop(ws_b);
        b.stop().await;
        let b = start(&config_b).await;
        let after_b = seen(&sb).await;
        assert!(
            after_b.runs(&ca),
            "A's session sandbox survives B's restart"
        );
        assert!(after_b.runs(&orphan_a), "A's orphan is not B's to remove");
        assert!(after_b.has_volume(&vol("orphan-a")));
        assert!(
            after_b.runs(&legacy),
            "an unlabelled container is left alone"
        );
        assert!(after_b.has_volume(&vol("legacy")));
        assert!(
            !after_b.has_container(&orphan_b),
            "B removed its own orphan"
        );
        assert!(!after_b.has_volume(&vol("orphan-b")));
        assert!(after_b.runs(&cb), "B's live session is kept");
        if quotas {
            assert!(
                image(&vol("orphan-a")).exists(),
                "A's workspace stays on disk"
            );
            assert!(
                !image(&vol("orphan-b")).exists(),
                "B's orphan workspace removed"
            );
            assert!(image(&vol("legacy")).exists());
        }
        let (out, _) = ws_a.run(json!({"command": "cat a.txt"})).await;
        assert_eq!(out, "a-work\n", "A's user is undisturbed");

        // A restarts: now its orphan goes; B's session and the unlabelled
        // sandbox stay.
        drop(ws_a);
        a.stop().await;
        let a = start(&config_a).await;
        let after_a = seen(&sb).await;
        assert!(
            !after_a.has_container(&orphan_a),
            "A removed its own orphan"
        );
        assert!(!after_a.has_volume(&vol("orphan-a")));
        assert!(
            after_a.runs(&cb),
            "B's session sandbox survives A's restart"
        );
        assert!(after_a.runs(&legacy));
        if quotas {
            assert!(!image(&vol("orphan-a")).exists());
            assert!(image(&vol("legacy")).exists());
        }
        let mut ws_a = browser_a.socket(&a, "").await;
        assert_eq!(
            container_of(&mut ws_a).await,
            ca,
            "A's user is back in the same sandbox"
        );
        let mut ws_b = browser_b.socket(&b, "").await;
        assert_eq!(container_of(&mut ws_b).await, cb);
        drop((ws_a, ws_b));

        a.stop().await;
        b.stop().await;
        // A handle bound to no deployment manages the whole prefix.
        cleanup(&sb).await;
    })
    .await
}

/// A copy of a deployment's store started as another deployment (a staging
/// made from production's data directory, with its own
/// `REPLBOX_DEPLOYMENT`) forgets the original's sandboxes at start-up and
/// touches none of them: the original's student finds the same sandbox and
/// files afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_copied_store_forgets_the_originals_sandboxes() {
    within(240, async {
        let (dir_a, dir_c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut config_a = server_config(dir_a.path());
        config_a.sandbox.deployment = Some(format!("prod-{:08x}", rand::random::<u32>()));
        let sb = engine(config_a.sandbox.clone()).await;
        let a = start(&config_a).await;
        let browser = Browser::new();
        browser.visit(&a).await;
        let mut ws = browser.socket(&a, "").await;
        let ca = container_of(&mut ws).await;
        let (out, _) = ws
            .run(json!({"command": "echo prod > p.txt && cat p.txt"}))
            .await;
        assert_eq!(out, "prod\n");
        drop(ws);
        a.stop().await;

        // The copy: the store, its keys and its id, as files.
        for entry in std::fs::read_dir(dir_a.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir_c.path().join(entry.file_name())).unwrap();
            }
        }
        let mut config_c = config_a.clone();
        config_c.data_dir = dir_c.path().to_path_buf();
        config_c.sandbox.deployment = Some(format!("staging-{:08x}", rand::random::<u32>()));
        let c = start(&config_c).await;
        let metrics = reqwest::get(c.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.lines().any(|l| l == "replbox_sessions 0"),
            "the copy forgot the original's session: {metrics}"
        );
        assert!(
            seen(&sb).await.runs(&ca),
            "the original's sandbox still runs beside the copy"
        );
        c.stop().await;

        let a = start(&config_a).await;
        let mut ws = browser.socket(&a, "").await;
        assert_eq!(container_of(&mut ws).await, ca, "the same sandbox");
        let (out, _) = ws.run(json!({"command": "cat p.txt"})).await;
        assert_eq!(out, "prod\n", "the same files");
        drop(ws);
        let sb_a = a.sandboxes().await;
        a.stop().await;
        cleanup(&sb_a).await;
    })
    .await
}
