//! The cookie sessions (tower-sessions) in the same database as the rest:
//! tower-sessions-sqlx-store's `SqliteStore` or `PostgresStore` behind one
//! type the session layer takes.

use super::Db;
use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

#[derive(Clone, Debug)]
pub enum CookieStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl CookieStore {
    /// The store on `db`'s pool, its table made when missing.
    pub(super) async fn open(db: &Db) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Db::Sqlite(p) => {
                let s = SqliteStore::new(p.clone());
                s.migrate().await?;
                CookieStore::Sqlite(s)
            }
            Db::Postgres(p) => {
                let s = PostgresStore::new(p.clone());
                s.migrate().await?;
                CookieStore::Postgres(s)
            }
        })
    }
}

#[async_trait]
impl SessionStore for CookieStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            CookieStore::Sqlite(s) => s.create(record).await,
            CookieStore::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            CookieStore::Sqlite(s) => s.save(record).await,
            CookieStore::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            CookieStore::Sqlite(s) => s.load(id).await,
            CookieStore::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            CookieStore::Sqlite(s) => s.delete(id).await,
            CookieStore::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for CookieStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            CookieStore::Sqlite(s) => s.delete_expired().await,
            CookieStore::Postgres(s) => s.delete_expired().await,
        }
    }
}
