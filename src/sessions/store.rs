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

/// Who holds a sandbox's lease, where it serves, until when (unix ms).
#[derive(Debug, Clone, sqlx::FromRow, PartialEq)]
pub struct Lease {
    pub replica: String,
    pub addr: String,
    pub expires_at: i64,
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

    /// Moves `owner`'s last activity forward to `at` (never back).
    pub async fn touch(&self, owner: &str, at: i64) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "UPDATE sandboxes SET last_active = $1 WHERE owner = $2 AND last_active < $1",
        )
        .bind(at)
        .bind(owner)
        .execute(p)
        .await
        .map(|_| ()))
    }

    /// Moves `owner`'s stored activity `secs` back (tests: as if the last
    /// write was then; nothing else moves it back).
    #[cfg(test)]
    pub(crate) async fn backdate(&self, owner: &str, secs: i64) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "UPDATE sandboxes SET last_active = last_active - $1 WHERE owner = $2",
        )
        .bind(secs)
        .bind(owner)
        .execute(p)
        .await
        .map(|_| ()))
    }

    /// Writes `row` (its last activity only forward: a snapshot that lands
    /// after the activity writer's newer time does not undo it).
    pub async fn upsert(&self, row: &SandboxRow) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "INSERT INTO sandboxes (owner, kind, token_hash, container_id, created_at, container_at,
                last_active, idle_ttl_secs, image, env, expired_at, workspace_volume)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT(owner) DO UPDATE SET container_id = excluded.container_id,
                container_at = excluded.container_at,
                last_active = CASE WHEN excluded.last_active > sandboxes.last_active
                    THEN excluded.last_active ELSE sandboxes.last_active END,
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

    /// One sandbox's record, as the store has it now.
    pub async fn get(&self, owner: &str) -> Result<Option<SandboxRow>, sqlx::Error> {
        on_db!(&self.db, p => {
            sqlx::query_as::<_, SandboxRow>("SELECT * FROM sandboxes WHERE owner = $1")
                .bind(owner)
                .fetch_optional(p)
                .await
        })
    }

    /// Records whose lease is free or lapsed at `now_ms`: no live replica
    /// acts on them.
    pub async fn unleased(&self, now_ms: i64) -> Result<Vec<SandboxRow>, sqlx::Error> {
        on_db!(&self.db, p => {
            sqlx::query_as::<_, SandboxRow>(
                "SELECT s.* FROM sandboxes s LEFT JOIN leases l ON l.sandbox = s.owner
                 WHERE l.sandbox IS NULL OR l.expires_at <= $1",
            )
            .bind(now_ms)
            .fetch_all(p)
            .await
        })
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
        on_db!(&self.db, p => sqlx::query(
            "INSERT INTO leases (sandbox, replica, addr, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(sandbox) DO UPDATE SET replica = excluded.replica,
                addr = excluded.addr, expires_at = excluded.expires_at
             WHERE leases.replica = excluded.replica OR leases.expires_at <= $5",
        )
        .bind(sandbox)
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .bind(now_ms)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(self.lease(sandbox).await?.unwrap_or(Lease {
            replica: String::new(),
            addr: String::new(),
            expires_at: 0,
        }))
    }

    /// Takes `sandbox`'s lease from the holder serving at `from.0` whose
    /// lease runs to `from.1` (as just read), if it is still that one's:
    /// whether it was taken.
    pub async fn take_lease_from(
        &self,
        sandbox: &str,
        from: (&str, i64),
        replica: &str,
        addr: &str,
        until_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = on_db!(&self.db, p => sqlx::query(
            "UPDATE leases SET replica = $1, addr = $2, expires_at = $3
             WHERE sandbox = $4 AND addr = $5 AND expires_at = $6",
        )
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .bind(sandbox)
        .bind(from.0)
        .bind(from.1)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Who holds `sandbox`'s lease (lapsed or not).
    pub async fn lease(&self, sandbox: &str) -> Result<Option<Lease>, sqlx::Error> {
        on_db!(&self.db, p => {
            sqlx::query_as::<_, Lease>(
                "SELECT replica, addr, expires_at FROM leases WHERE sandbox = $1",
            )
            .bind(sandbox)
            .fetch_optional(p)
            .await
        })
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
        on_db!(&self.db, p => sqlx::query(
            "INSERT INTO replicas (id, addr, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT(id) DO UPDATE SET addr = excluded.addr, expires_at = excluded.expires_at",
        )
        .bind(replica)
        .bind(addr)
        .bind(until_ms)
        .execute(p)
        .await
        .map(|_| ()))?;
        on_db!(&self.db, p => {
            sqlx::query_scalar::<_, String>(
                "UPDATE leases SET expires_at = $1, addr = $2 WHERE replica = $3 RETURNING sandbox",
            )
            .bind(until_ms)
            .bind(addr)
            .bind(replica)
            .fetch_all(p)
            .await
        })
    }

    /// Gives `sandbox`'s lease back, if `replica` holds it.
    pub async fn release_lease(&self, sandbox: &str, replica: &str) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query("DELETE FROM leases WHERE sandbox = $1 AND replica = $2")
            .bind(sandbox)
            .bind(replica)
            .execute(p)
            .await
            .map(|_| ()))
    }

    /// Gives back every lease of `replica` and its heartbeat (a graceful
    /// shutdown: the others take its sandboxes at once).
    pub async fn release_replica(&self, replica: &str) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query("DELETE FROM leases WHERE replica = $1")
            .bind(replica)
            .execute(p)
            .await
            .map(|_| ()))?;
        on_db!(&self.db, p => sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(p)
            .await
            .map(|_| ()))
    }

    /// Other replicas whose heartbeat has not lapsed at `now_ms`.
    pub async fn other_live_replicas(
        &self,
        replica: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        on_db!(&self.db, p => {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM replicas WHERE id <> $1 AND expires_at > $2",
            )
            .bind(replica)
            .bind(now_ms)
            .fetch_all(p)
            .await
        })
    }

    pub async fn delete(&self, owner: &str) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query("DELETE FROM sandboxes WHERE owner = $1")
            .bind(owner)
            .execute(p)
            .await
            .map(|_| ()))
    }
}
