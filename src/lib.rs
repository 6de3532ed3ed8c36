//! replbox: a self-hosted online IDE and REPL. How it is built:
//! docs/architecture.md; how to run and test it: README.md.
//!
//! [`serve`] runs the whole app on a listener until `shutdown` resolves, so
//! tests start the real thing on 127.0.0.1:0.

pub mod classroom;
pub mod config;
pub mod error;
pub mod exercises;
pub mod metrics;
pub mod routes;
pub mod runs;
pub mod sandbox;
pub mod sessions;

use config::Config;
use routes::AppState;
use sandbox::Sandboxes;
use sessions::{reaper::IdleReaper, Registry, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_sessions_sqlx_store::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the data store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("cannot reach the container engine: {0}")]
    Engine(#[from] sandbox::SandboxError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the app on `listener` until `shutdown` resolves, then closes every
/// socket (1001) and waits for requests in flight.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let languages = Arc::new(config.language_table().map_err(ServeError::Config)?);
    let store = Store::open(&config.data_dir).await?;
    let session_store = SqliteStore::new(store.pool().clone());
    session_store.migrate().await?;
    let sandboxes = Sandboxes::new(config.sandbox.clone()).map_err(|e| match e {
        sandbox::SandboxError::Config(m) => ServeError::Config(m),
        e => e.into(),
    })?;
    let metrics = metrics::Metrics::default();
    let registry =
        Registry::open(config.clone(), sandboxes, store.clone(), metrics.clone()).await?;
    if let Err(e) = registry.recover().await {
        // The engine may come back later; /healthz says so meanwhile.
        tracing::warn!(error = %e, "start-up recovery skipped: engine unavailable");
    }

    let mut exercises = std::collections::BTreeMap::new();
    if let Some(dir) = &config.exercises_dir {
        match exercises::load_all(dir, &languages) {
            Ok(list) => {
                for item in list {
                    match item {
                        Ok(x) => {
                            exercises.insert(x.id.clone(), Arc::new(x));
                        }
                        Err(e) => tracing::warn!("exercise refused: {e}"),
                    }
                }
                tracing::info!(loaded = exercises.len(), "exercises");
            }
            Err(e) => tracing::warn!("exercises: {e}"),
        }
    }
    let classroom = classroom::Classroom::new(store.pool().clone());

    let cancel = CancellationToken::new();
    let _reaper = sessions::AbortOnDrop(IdleReaper::spawn(
        registry.clone(),
        Duration::from_millis(config.reap_interval_ms.max(50)),
        cancel.clone(),
    ));
    let _pool = registry.start_pool(cancel.clone());
    let drain_registry = registry.clone();
    let state = AppState {
        config: config.clone(),
        registry,
        metrics,
        languages,
        shutdown: cancel.clone(),
        new_sessions: routes::new_session_limiter(config.new_sessions_per_minute),
        sockets: tokio_util::task::TaskTracker::new(),
        classroom,
        exercises: Arc::new(exercises),
    };
    let sockets = state.sockets.clone();
    let app = routes::router(state, session_store);
    tracing::info!(addr = %listener.local_addr()?, "replbox listening");
    let stop = cancel.clone();
    // Small frames (a keystroke, an exit) must not wait for Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stop.cancel();
    })
    .await?;
    cancel.cancel();
    // Upgraded connections are not part of hyper's graceful shutdown: give
    // every socket a moment to send its close frame.
    sockets.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), sockets.wait()).await;
    drop(_pool);
    let _ = tokio::time::timeout(Duration::from_secs(10), drain_registry.drain_pool()).await;
    Ok(())
}
