//! replbox: a self-hosted online IDE and REPL. How it is built:
//! docs/architecture.md; how to run and test it: README.md.
//!
//! [`serve`] runs the whole app on a listener until `shutdown` resolves, so
//! tests start the real thing on 127.0.0.1:0.

pub mod classroom;
pub mod config;
pub mod db;
pub mod error;
pub mod exercises;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod routes;
pub mod sandbox;
pub mod services;
pub mod sessions;
pub mod sync;

use config::Config;
use routes::AppState;
use sandbox::Sandboxes;
use sessions::{reaper::IdleReaper, Registry, Store};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the data store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("cannot open the data store: {0}")]
    Db(#[from] db::DbError),
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
    let mut config = config;
    config.sandbox.deployment = Some(
        sandbox::deployment::resolve(&config.data_dir, config.sandbox.deployment.as_deref())
            .map_err(ServeError::Config)?,
    );
    tracing::info!(deployment = ?config.sandbox.deployment, "this deployment's sandboxes carry its id");
    // Where other replicas forward this one's sandboxes' requests, and its
    // id among them (sessions/lease.rs).
    if config.advertise_addr.is_none() {
        config.advertise_addr = Some(listener.local_addr()?.to_string());
    }
    if config.replica_id.is_none() {
        // Unique per process: two replicas given the same address (a
        // Deployment's pods that all listen on 0.0.0.0:8080) must never
        // take each other for themselves. A restarted replica's old leases
        // are given back at a graceful stop, or lapse.
        config.replica_id = Some(format!(
            "{}#{:08x}",
            config.advertise_addr.as_deref().unwrap_or_default(),
            rand::random::<u32>()
        ));
    }
    if config.database_url.is_some()
        && config
            .advertise_addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .is_some_and(|a| a.ip().is_unspecified())
    {
        tracing::warn!(
            advertised = ?config.advertise_addr,
            "REPLBOX_ADVERTISE_ADDR is not set and this replica listens on every address: other replicas cannot forward to it; set REPLBOX_ADVERTISE_ADDR to an address they reach"
        );
    }
    tracing::info!(replica = ?config.replica_id, advertised = ?config.advertise_addr, "this replica");
    let config = Arc::new(config);
    let languages = Arc::new(config.language_table().map_err(ServeError::Config)?);
    let db = db::Db::open(&config.data_dir, config.database_url.as_deref()).await?;
    tracing::info!(backend = db.backend(), "store open");
    let store = Store::new(db.clone());
    let session_store = db.cookie_store().await?;
    let sandboxes: Arc<dyn sandbox::Backend> = match config.sandbox.backend {
        config::BackendKind::Docker => {
            let docker = Sandboxes::new(config.sandbox.clone()).map_err(|e| match e {
                sandbox::SandboxError::Config(m) => ServeError::Config(m),
                e => e.into(),
            })?;
            match docker.check_runtime().await {
                Ok(()) => {}
                Err(sandbox::SandboxError::Config(m)) => return Err(ServeError::Config(m)),
                // The engine may come back later; /healthz says so meanwhile.
                Err(e) => tracing::warn!(error = %e, "cannot check the sandbox runtime now"),
            }
            Arc::new(docker)
        }
        config::BackendKind::Kubernetes => {
            tracing::info!(namespace = %config.sandbox.kube_namespace, "sandboxes are Kubernetes pods");
            Arc::new(sandbox::Pods::new(config.sandbox.clone()))
        }
    };
    let renamed =
        services::tasks::namespace_old_names(&store, |owner| sandboxes.volume_name(owner)).await?;
    if renamed > 0 {
        tracing::info!(renamed, "API sandboxes moved into their tokens' namespaces");
    }
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
    let classroom = classroom::Classroom::with_hashers(db.clone(), config.password_hashers());
    match classroom.lengthen_short_codes().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            classes = n,
            "class codes shorter than 12 characters were replaced; teachers see the new codes on their dashboards"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot lengthen short class codes"),
    }
    let safe = config.safe_sandboxes();
    if config.max_sandboxes() > safe {
        tracing::warn!(
            max_sandboxes = config.max_sandboxes(),
            safe,
            footprint_mb = config.sandbox_footprint_mb(),
            "REPLBOX_MAX_SANDBOXES is above what this machine's memory holds at full use: the host can be overcommitted"
        );
    }

    let cancel = CancellationToken::new();
    let _reaper = sessions::AbortOnDrop(IdleReaper::spawn(
        registry.clone(),
        Duration::from_millis(config.reap_interval_ms.max(50)),
        cancel.clone(),
    ));
    let _pool = registry.start_pool(cancel.clone());
    let _leases = registry.spawn_leases(cancel.clone());
    // Its own token: it takes activity until the sockets are closed.
    let activity_stop = CancellationToken::new();
    let mut activity = registry.spawn_activity(activity_stop.clone());
    let drain_registry = registry.clone();
    let services = services::Services {
        config: config.clone(),
        registry,
        languages,
        classroom,
        exercises: Arc::new(exercises),
        limits: Arc::new(limits::Limits::new(&config)),
        background: tokio_util::task::TaskTracker::new(),
        shutdown: cancel.clone(),
    };
    let background = services.background.clone();
    let state = AppState {
        config: config.clone(),
        services,
        metrics,
        shutdown: cancel.clone(),
        new_sessions: routes::new_session_limiter(config.new_sessions_per_minute),
        sockets: background,
        health: Arc::default(),
        jupyter: Arc::default(),
        token_key: Arc::new(services::tokens::load_token_key(&config.data_dir)?),
    };
    // Expired cookie sessions are deleted hourly (the store keeps them
    // otherwise).
    let _purge = sessions::AbortOnDrop(tokio::spawn({
        use tower_sessions::session_store::ExpiredDeletion;
        let store = session_store.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                if let Err(e) = store.delete_expired().await {
                    tracing::warn!(error = %e, "cannot purge expired sessions");
                }
            }
        }
    }));
    let sockets = state.sockets.clone();
    let app = routes::router(state, session_store);
    tracing::info!(addr = %listener.local_addr()?, "replbox listening");
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            cancel.cancel();
        });
    }
    listener::serve(
        listener,
        app,
        listener::Deadlines {
            header_read: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
            body: Duration::from_secs(config.body_timeout_secs.max(1)),
            max_connections: {
                // Raised whatever the cap: every connection, and every
                // sandbox's agent connection, holds a descriptor.
                let open_files = listener::raise_open_files();
                match config.max_connections {
                    0 => (open_files / 2).min(4096),
                    n => n,
                }
            },
            per_client: config.connections_per_client,
            exempt: config.trusted_proxies.clone(),
        },
        cancel.clone(),
    )
    .await?;
    cancel.cancel();
    // Upgraded connections are not part of hyper's graceful shutdown: give
    // every socket a moment to send its close frame.
    sockets.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), sockets.wait()).await;
    // The others take this replica's sandboxes at once, not after a lapse:
    // before the pool's clean-up, which may take seconds a stop's grace
    // period (Kubernetes: 45 s) may not leave.
    drop(_leases);
    // What activity is queued is written, then the leases go.
    activity_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut activity.0).await;
    drain_registry.release_leases().await;
    drop(_pool);
    let _ = tokio::time::timeout(Duration::from_secs(10), drain_registry.drain_pool()).await;
    Ok(())
}
