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

/// Who holds a sandbox's lease, where it serves, until when (unix ms).
#[derive(Debug, Clone, sqlx::FromRow, PartialEq)]
pub struct Lease {
    pub replica: String,
    pub addr: String,
    pub expires_at: i64,
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
        // Replicas starting together run the same migrations: the loser of
        // a race finds the version recorded (a unique key) and tries again,
        // when the applied ones are skipped.
        let mut tries = 0;
        loop {
            match sqlx::migrate!("./migrations").run(&pool).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::info!(error = %e, "migrations raced another replica's; again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
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

    /// One sandbox's record, as the store has it now.
    pub async fn get(&self, owner: &str) -> Result<Option<SandboxRow>, sqlx::Error> {
        sqlx::query_as::<_, SandboxRow>("SELECT * FROM sandboxes WHERE owner = ?")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records whose lease is free or lapsed at `now_ms`: no live replica
    /// acts on them.
    pub async fn unleased(&self, now_ms: i64) -> Result<Vec<SandboxRow>, sqlx::Error> {
        sqlx::query_as::<_, SandboxRow>(
            "SELECT s.* FROM sandboxes s LEFT JOIN leases l ON l.sandbox = s.owner
             WHERE l.sandbox IS NULL OR l.expires_at <= ?",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
    }

    /// Takes `sandbox`'s lease for `replica` until `until_ms` when it is
    /// free, lapsed at `now_ms` or already ours (one statement: two
    /// replicas never both get it). The holder after the attempt.
    pub async fn take_lease(
        &self,
        sandbox: &str,
        replica: &str,
        addr: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Lease, sqlx::Error> {
        sqlx::query(
            "INSERT INTO leases (sandbox, replica, addr, expires_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(sandbox) DO UPDATE SET replica = excluded.replica,
                addr = excluded.addr, expires_at = excluded.expires_at
             WHERE leases.replica = excluded.replica OR leases.expires_at <= ?",
        )
        .bind(sandbox)
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.lease(sandbox).await.map(|l| {
            l.unwrap_or(Lease {
                replica: String::new(),
                addr: String::new(),
                expires_at: 0,
            })
        })
    }

    /// Takes `sandbox`'s lease from the holder serving at `addr` whose
    /// lease runs to `expires_at` (as just read), if it is still that one's:
    /// whether it was taken.
    pub async fn take_lease_from(
        &self,
        sandbox: &str,
        from: (&str, i64),
        replica: &str,
        addr: &str,
        until_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE leases SET replica = ?, addr = ?, expires_at = ?
             WHERE sandbox = ? AND addr = ? AND expires_at = ?",
        )
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .bind(sandbox)
        .bind(from.0)
        .bind(from.1)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Who holds `sandbox`'s lease (lapsed or not).
    pub async fn lease(&self, sandbox: &str) -> Result<Option<Lease>, sqlx::Error> {
        sqlx::query_as::<_, Lease>("SELECT replica, addr, expires_at FROM leases WHERE sandbox = ?")
            .bind(sandbox)
            .fetch_optional(&self.pool)
            .await
    }

    /// Renews every lease `replica` still holds, and its heartbeat, until
    /// `until_ms`; the sandboxes whose leases it still holds (one taken
    /// over after it lapsed is not among them).
    pub async fn renew_leases(
        &self,
        replica: &str,
        addr: &str,
        until_ms: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(
            "INSERT INTO replicas (id, addr, expires_at) VALUES (?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET addr = excluded.addr, expires_at = excluded.expires_at",
        )
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar::<_, String>(
            "UPDATE leases SET expires_at = ?, addr = ? WHERE replica = ? RETURNING sandbox",
        )
        .bind(until_ms)
        .bind(addr)
        .bind(replica)
        .fetch_all(&self.pool)
        .await
    }

    /// Gives `sandbox`'s lease back, if `replica` holds it.
    pub async fn release_lease(&self, sandbox: &str, replica: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE sandbox = ? AND replica = ?")
            .bind(sandbox)
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives back every lease of `replica` and its heartbeat (a graceful
    /// shutdown: the others take its sandboxes at once).
    pub async fn release_replica(&self, replica: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE replica = ?")
            .bind(replica)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE id = ?")
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Other replicas whose heartbeat has not lapsed at `now_ms`.
    pub async fn other_live_replicas(
        &self,
        replica: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar::<_, String>("SELECT id FROM replicas WHERE id <> ? AND expires_at > ?")
            .bind(replica)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn delete(&self, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sandboxes WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
