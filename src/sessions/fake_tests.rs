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

/// A replica named `id` on a shared store and engine.
async fn replica(id: &str, store: &store::Store, backend: Arc<FakeBackend>) -> Registry {
    let config = Config {
        replica_id: Some(id.into()),
        advertise_addr: Some(format!("127.0.0.1:{}", id.len() + 9000)),
        lease_secs: 15,
        ..config(4)
    };
    Registry::open(Arc::new(config), backend, store.clone(), Metrics::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn one_replica_holds_a_sandbox_until_its_lease_lapses_and_then_another_takes_it() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(dir.path()).await.unwrap();
        let backend = Arc::new(FakeBackend::default());
        let a = replica("a", &store, backend.clone()).await;
        let b = replica("bb", &store, backend.clone()).await;
        let on_a = a
            .get_or_create("b-ada", OwnerKind::Browser, NewSession::default())
            .await
            .unwrap();
        on_a.ensure().await.unwrap();
        let mut events = on_a.hub.subscribe();

        // B neither makes it again nor acts on it: A holds it.
        assert_eq!(
            b.hold("b-ada").await.unwrap(),
            Holder::Elsewhere {
                addr: "127.0.0.1:9001".into(),
                until_ms: store.lease("b-ada").await.unwrap().unwrap().expires_at,
            }
        );
        assert!(matches!(
            b.create("b-ada", OwnerKind::Browser, NewSession::default())
                .await,
            Err(SessionError::AlreadyExists(_))
        ));
        assert!(matches!(
            b.remove("b-ada").await,
            Err(SessionError::Elsewhere { .. })
        ));
        // A name with no sandbox takes no lease (a caller makes names up).
        assert_eq!(a.hold("b-nobody").await.unwrap(), Holder::Here);
        assert!(store.lease("b-nobody").await.unwrap().is_none());
        // A lease not renewed for its whole length is not acted on here,
        // even before another replica takes it (a store outage).
        let at = on_a.lock().leased_at;
        on_a.lock().leased_at = Some(lease::now_ms() - 20_000);
        assert!(!on_a.leased(), "stale");
        on_a.lock().leased_at = at;
        a.renew_once().await;
        assert!(on_a.leased(), "renewed");

        // A stops renewing: once its lease has lapsed (taken here as if
        // 20 s had passed), B takes the sandbox, re-attaching to the same
        // container; A hears at its next renewal that it lost it.
        let later = lease::now_ms() + 20_000;
        let taken = store
            .take_lease("b-ada", "bb", "127.0.0.1:9002", later, later + 15_000)
            .await
            .unwrap();
        assert_eq!(taken.replica, "bb");
        assert_eq!(b.hold("b-ada").await.unwrap(), Holder::Here);
        let on_b = b.get("b-ada").expect("loaded from the store");
        on_b.ensure().await.unwrap();
        assert_eq!(backend.created(), 1, "the same container, re-attached");
        assert_eq!(on_b.container_id(), on_a.container_id());

        a.renew_once().await;
        assert!(!on_a.leased());
        assert!(on_a.live_handle().is_none(), "A let go of the agent");
        loop {
            if let SessionEvent::Moved = events.recv().await.unwrap() {
                break;
            }
        }
        // A's reaper and capacity no longer count or expire it.
        assert_eq!(a.shared.live(), 0);
        assert_eq!(b.shared.live(), 1);
        on_a.expire().await;
        assert_eq!(backend.live(), 1, "only the holder expires a sandbox");
        assert!(matches!(
            a.hold("b-ada").await.unwrap(),
            Holder::Elsewhere { .. }
        ));
        // B's expiry ends it once and gives the lease back.
        on_b.expire().await;
        assert_eq!((backend.live(), backend.removed()), (0, 1));
        assert!(store.lease("b-ada").await.unwrap().is_none());
    })
    .await
}

#[tokio::test]
async fn activity_reaches_the_store_off_the_request_path() {
    within(async {
        let backend = Arc::new(FakeBackend::default());
        let (registry, _dir) = registry(config(4), backend).await;
        let session = registry
            .get_or_create("b-ada", OwnerKind::Browser, NewSession::default())
            .await
            .unwrap();
        session.ensure().await.unwrap();
        let store = registry.shared.store.clone();
        // The stored activity a minute old, as if the last write was then.
        store.backdate("b-ada", 60).await.unwrap();
        let old_row = store.get("b-ada").await.unwrap().unwrap();
        let old = old_row.last_active;
        session.lock().persisted_active = old;

        // No writer yet: the touch neither waits nor fails, nothing is written.
        session.touch().await;
        assert_eq!(store.get("b-ada").await.unwrap().unwrap().last_active, old);

        // The writer writes what was queued.
        let cancel = tokio_util::sync::CancellationToken::new();
        let _writer = registry.spawn_activity(cancel.clone());
        let touched = session.lock().last_active;
        while store.get("b-ada").await.unwrap().unwrap().last_active != touched {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // An older time never moves it back, nor does an older snapshot.
        store.touch("b-ada", old).await.unwrap();
        store.upsert(&old_row).await.unwrap();
        assert_eq!(
            store.get("b-ada").await.unwrap().unwrap().last_active,
            touched
        );
        cancel.cancel();
    })
    .await
}

/// A registry with a running pool of `n` on the fake engine, its refill
/// delay 400 ms, once the pool is full.
async fn pool_of(
    n: usize,
) -> (
    Registry,
    Arc<FakeBackend>,
    tempfile::TempDir,
    tokio_util::sync::CancellationToken,
    AbortOnDrop,
) {
    let backend = Arc::new(FakeBackend::default());
    let config = Config {
        warm_pool: n,
        warm_pool_refill_delay_ms: 400,
        ..config(8)
    };
    let (registry, dir) = registry(config, backend.clone()).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let pool = registry.start_pool(cancel.clone());
    while registry.shared.pool.ready() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (registry, backend, dir, cancel, pool)
}

async fn until_created(backend: &FakeBackend, n: usize) {
    while backend.created() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A new student's session takes its sandbox; when it asked.
async fn new_student_claims(registry: &Registry) -> std::time::Instant {
    let session = registry
        .get_or_create("b-ada", OwnerKind::Browser, NewSession::default())
        .await
        .unwrap();
    let claimed = std::time::Instant::now();
    session.ensure().await.unwrap();
    claimed
}

#[tokio::test]
async fn a_claimed_pool_container_is_replaced_only_after_the_refill_delay() {
    within(async {
        let (registry, backend, _dir, cancel, _pool) = pool_of(2).await;
        let claimed = new_student_claims(&registry).await;
        // The new student's sandbox came from the pool, one is left for the
        // next arrival, and no replacement starts during the student's
        // first moments.
        assert_eq!(backend.created(), 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(backend.created(), 2, "the refill did not wait");
        until_created(&backend, 3).await;
        assert!(claimed.elapsed() >= Duration::from_millis(400));
        cancel.cancel();
    })
    .await
}

#[tokio::test]
async fn a_claim_that_empties_the_pool_refills_it_at_once() {
    within(async {
        let (registry, backend, _dir, cancel, _pool) = pool_of(1).await;
        let claimed = new_student_claims(&registry).await;
        // Nobody would be left a warm container by waiting: no wait.
        until_created(&backend, 2).await;
        assert!(claimed.elapsed() < Duration::from_millis(400));
        cancel.cancel();
    })
    .await
}
