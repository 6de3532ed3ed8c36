//! The registry on the fake engine (`sandbox::fake`): a session's sandbox,
//! its files and a run, removal, and the cap on live sandboxes, with no
//! Docker.

use super::*;
use crate::sandbox::fake::FakeBackend;
use replbox_protocol::JobSpec;
use std::time::Duration;

async fn registry(config: Config, backend: Arc<FakeBackend>) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).await.unwrap();
    let registry = Registry::open(Arc::new(config), backend, store, Metrics::default())
        .await
        .unwrap();
    (registry, dir)
}

fn config(max_sandboxes: usize) -> Config {
    Config {
        warm_pool: 0,
        max_sandboxes,
        ..Config::default()
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("the test took over 10 s")
}

#[tokio::test]
async fn a_session_gets_a_sandbox_keeps_files_runs_and_is_removed() {
    within(async {
        let backend = Arc::new(FakeBackend::default());
        let (registry, _dir) = registry(config(4), backend.clone()).await;
        let session = registry
            .get_or_create("b-ada", OwnerKind::Browser, NewSession::default())
            .await
            .unwrap();
        let handle = session.ensure().await.unwrap();
        assert_eq!(backend.created(), 1);
        // The same session's next ask is the same sandbox.
        session.ensure().await.unwrap();
        assert_eq!(backend.created(), 1);

        handle
            .write_file("main.py".into(), b"print(1)".to_vec())
            .await
            .unwrap();
        assert_eq!(
            handle.read_file("main.py".into()).await.unwrap(),
            b"print(1)"
        );
        let run = handle
            .spawn(JobSpec::shell("python3 main.py"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(run.exit.unwrap().code, Some(0));
        assert!(String::from_utf8_lossy(&run.stdout).contains("python3 main.py"));

        registry.remove("b-ada").await.unwrap();
        assert!(registry.get("b-ada").is_none());
        assert_eq!((backend.live(), backend.removed()), (0, 1));
    })
    .await
}

#[tokio::test]
async fn room_for_a_check_is_refused_past_the_cap_until_it_is_given_back() {
    within(async {
        let backend = Arc::new(FakeBackend::default());
        let (registry, _dir) = registry(config(2), backend.clone()).await;
        let session = registry
            .get_or_create("b-ada", OwnerKind::Browser, NewSession::default())
            .await
            .unwrap();
        session.ensure().await.unwrap();
        // More than the cap holds at all.
        assert!(matches!(
            registry.reserve(3).await,
            Err(SessionError::CapacityFull)
        ));
        let held = registry.reserve(1).await.unwrap();
        // The one live sandbox was just used: it is not evicted to make room.
        assert!(matches!(
            registry.reserve(1).await,
            Err(SessionError::CapacityFull)
        ));
        assert_eq!(backend.live(), 1);
        drop(held);
        registry.reserve(1).await.unwrap();
    })
    .await
}
