//! The one store: every table (sandboxes, teachers, classes, students,
//! checks) and the cookie sessions live in one database, SQLite under the
//! data dir by default, PostgreSQL when `REPLBOX_DATABASE_URL` is set
//! (`postgres://…`), so that several servers can share it.
//!
//! [`Db`] is an enum over the two typed pools, not sqlx's `Any` driver:
//! the cookie-session store (tower-sessions-sqlx-store) takes a typed pool
//! (`SqliteStore`, `PostgresStore`), `Any` connects from a URL only (so
//! SQLite's WAL, synchronous and busy settings would be lost), and a query
//! that must differ (a lease, a lock) can say so per backend. A query
//! written once for both goes through [`on_db!`], which expands the same
//! code for each pool: its SQL uses `$1`, `$2`… (both drivers take them)
//! and the SQL both dialects share (`ON CONFLICT`, no `rowid`, no
//! `INSERT OR IGNORE`).
//!
//! Migrations: `migrations/` for SQLite, `migrations/postgres/` its twin
//! (the same files where the SQL is the same; `twins_in_step` below keeps
//! them so).

mod cookies;

pub use cookies::CookieStore;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A pool of one of the two backends. Cheap to clone (the pools are).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool `$db` holds: `$pool` is bound to
/// `&SqlitePool` or `&PgPool`, and both arms must give the same type (map
/// a query result to `rows_affected()`, rows to a `FromRow` type).
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("REPLBOX_DATABASE_URL must start with postgres:// or postgresql://")]
    BadUrl,
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<DbError> for sqlx::Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::BadUrl => sqlx::Error::Configuration(e.to_string().into()),
            DbError::Sql(e) => e,
            DbError::Migrate(e) => sqlx::Error::Migrate(Box::new(e)),
        }
    }
}

impl Db {
    /// PostgreSQL at `database_url` when given, else SQLite under
    /// `data_dir`; the schema migrated either way.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<Self, DbError> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Self::open_postgres(url).await,
            None => Self::open_sqlite(data_dir).await,
        }
    }

    /// `data_dir/replbox.db`, made when missing.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(data_dir).map_err(sqlx::Error::Io)?;
        let url = format!("sqlite://{}", data_dir.join("replbox.db").display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL: a commit survives the server crashing (only a
            // power cut can lose the last ones), and costs no fsync.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db::Sqlite(pool))
    }

    /// A PostgreSQL database (`postgres://user:password@host:port/db`).
    /// Servers starting at once migrate one at a time (sqlx holds an
    /// advisory lock while it migrates).
    pub async fn open_postgres(url: &str) -> Result<Self, DbError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(DbError::BadUrl);
        }
        let options = PgConnectOptions::from_str(url)?.application_name("replbox");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Db::Postgres(pool))
    }

    /// "sqlite" or "postgres" (for logs and /healthz).
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The SQLite pool, when that is the backend (tests that reach into
    /// the file).
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(p) => Some(p),
            Db::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, when that is the backend.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }

    /// The cookie sessions' store in the same database, its table made.
    pub async fn cookie_store(&self) -> Result<CookieStore, sqlx::Error> {
        CookieStore::open(self).await
    }

    /// Waits for the pool's connections to close.
    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The same migrations, version by version, for both backends: the
    /// same description, and the same SQL except where a dialect differs
    /// (named here, with the reason in the file).
    #[test]
    fn twins_in_step() {
        let sqlite = sqlx::migrate!("./migrations");
        let postgres = sqlx::migrate!("./migrations/postgres");
        let by_version = |m: &sqlx::migrate::Migrator| -> BTreeMap<i64, (String, String)> {
            m.iter()
                .map(|m| (m.version, (m.description.to_string(), m.sql.to_string())))
                .collect()
        };
        let (a, b) = (by_version(&sqlite), by_version(&postgres));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "migrations/ and migrations/postgres/ must have the same versions"
        );
        const DIFFER: &[i64] = &[6];
        for (v, (desc, sql)) in &a {
            assert_eq!(desc, &b[v].0, "migration {v}: not the same name");
            if !DIFFER.contains(v) {
                assert_eq!(sql, &b[v].1, "migration {v}: not the same SQL");
            }
        }
    }
}
