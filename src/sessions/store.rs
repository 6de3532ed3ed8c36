//! The durable record of sandboxes: who owns which, and its clock, in the
//! one database (`crate::db`: SQLite under the data dir by default,
//! PostgreSQL with `REPLBOX_DATABASE_URL`).

use crate::db::Db;
use crate::on_db;
use std::path::Path;

#[derive(Debug, Clone, sqlx::FromRow, PartialEq)]
pub struct SandboxRow {
    pub owner: String,
    pub kind: String,
    pub token_hash: Option<String>,
    pub container_id: Option<String>,
    pub created_at: i64,
    pub container_at: i64,
    pub last_active: i64,
    pub idle_ttl_secs: i64,
    pub image: Option<String>,
    pub env: String,
    pub expired_at: Option<i64>,
    pub workspace_volume: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The SQLite store under `data_dir` (what tests and `make run` use).
    pub async fn open(data_dir: &Path) -> Result<Self, sqlx::Error> {
        Ok(Self::new(Db::open_sqlite(data_dir).await?))
    }

    /// The database this store keeps its rows in (the classroom's and the
    /// cookie sessions' too).
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn all(&self) -> Result<Vec<SandboxRow>, sqlx::Error> {
        on_db!(&self.db, p => {
            sqlx::query_as::<_, SandboxRow>("SELECT * FROM sandboxes")
                .fetch_all(p)
                .await
        })
    }

    pub async fn upsert(&self, row: &SandboxRow) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "INSERT INTO sandboxes (owner, kind, token_hash, container_id, created_at, container_at,
                last_active, idle_ttl_secs, image, env, expired_at, workspace_volume)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT(owner) DO UPDATE SET container_id = excluded.container_id,
                container_at = excluded.container_at, last_active = excluded.last_active,
                expired_at = excluded.expired_at, workspace_volume = excluded.workspace_volume",
        )
        .bind(&row.owner)
        .bind(&row.kind)
        .bind(&row.token_hash)
        .bind(&row.container_id)
        .bind(row.created_at)
        .bind(row.container_at)
        .bind(row.last_active)
        .bind(row.idle_ttl_secs)
        .bind(&row.image)
        .bind(&row.env)
        .bind(row.expired_at)
        .bind(&row.workspace_volume)
        .execute(p)
        .await
        .map(|_| ()))
    }

    /// Gives a record a new owner, keeping its volume's name (`volume`
    /// when it had none on record).
    pub async fn rename_owner(
        &self,
        old: &str,
        new: &str,
        volume: &str,
    ) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "UPDATE sandboxes SET owner = $1, workspace_volume = COALESCE(workspace_volume, $2)
             WHERE owner = $3",
        )
        .bind(new)
        .bind(volume)
        .bind(old)
        .execute(p)
        .await
        .map(|_| ()))
    }

    pub async fn delete(&self, owner: &str) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query("DELETE FROM sandboxes WHERE owner = $1")
            .bind(owner)
            .execute(p)
            .await
            .map(|_| ()))
    }
}
