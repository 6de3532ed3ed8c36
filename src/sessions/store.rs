//! The durable record of sandboxes: who owns which, and its clock. SQLite
//! under the data dir by default (the same pool holds the cookie sessions).

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;

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
    pool: SqlitePool,
}

impl Store {
    pub async fn open(data_dir: &Path) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(data_dir).map_err(sqlx::Error::Io)?;
        let url = format!("sqlite://{}", data_dir.join("replbox.db").display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL: a commit survives the server crashing (only a
            // power cut can lose the last ones), and costs no fsync.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn all(&self) -> Result<Vec<SandboxRow>, sqlx::Error> {
        sqlx::query_as::<_, SandboxRow>("SELECT * FROM sandboxes")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn upsert(&self, row: &SandboxRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sandboxes (owner, kind, token_hash, container_id, created_at, container_at,
                last_active, idle_ttl_secs, image, env, expired_at, workspace_volume)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a record a new owner, keeping its volume's name (`volume`
    /// when it had none on record).
    pub async fn rename_owner(
        &self,
        old: &str,
        new: &str,
        volume: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sandboxes SET owner = ?, workspace_volume = COALESCE(workspace_volume, ?)
             WHERE owner = ?",
        )
        .bind(new)
        .bind(volume)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete(&self, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sandboxes WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
