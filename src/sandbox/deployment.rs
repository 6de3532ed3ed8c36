//! Which deployment owns a sandbox. Every container and workspace volume a
//! server makes carries `replbox.deployment=<id>`; start-up recovery and
//! the orphan sweep touch only their own id's, so two servers with their
//! own stores (staging beside production, `make run` beside the tests) can
//! share one engine without removing each other's sandboxes.
//!
//! The id is `REPLBOX_DEPLOYMENT` when set, else the one kept in the data
//! directory (`<data dir>/deployment`, made at random on the first start):
//! it stays with the store, so moving the data directory keeps it, and two
//! servers in containers that both mount their store at `/data` still
//! differ. A copy of a data directory copies its id: give the copy its own
//! `REPLBOX_DEPLOYMENT`.

use std::path::Path;

pub const LABEL_DEPLOYMENT: &str = "replbox.deployment";

/// The file in the data directory that keeps the id.
const ID_FILE: &str = "deployment";

/// Whose a labelled container or volume is, seen from one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Carries our id (or we are a handle bound to no deployment, which
    /// manages everything under its name prefix: tests and tools).
    Ours,
    /// Made before deployment labels: ours only if our store knows it.
    Unlabelled,
    /// Another deployment's: never touched.
    Other,
}

impl Ownership {
    /// `ours`: this handle's id; `label`: what the object carries.
    pub fn of(ours: Option<&str>, label: Option<&str>) -> Self {
        match (ours, label) {
            (None, _) => Ownership::Ours,
            (Some(_), None) => Ownership::Unlabelled,
            (Some(a), Some(b)) if a == b => Ownership::Ours,
            (Some(_), Some(_)) => Ownership::Other,
        }
    }
}

/// Whether `id` may be a deployment id.
pub fn check(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "deployment id {id:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// The deployment id: `explicit` (checked), or the one kept in
/// `data_dir`, made there on the first call.
pub fn resolve(data_dir: &Path, explicit: Option<&str>) -> Result<String, String> {
    if let Some(id) = explicit {
        check(id)?;
        return Ok(id.to_string());
    }
    let file = data_dir.join(ID_FILE);
    let shown = file.display();
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let id = text.trim();
            check(id).map_err(|e| format!("{shown}: {e}"))?;
            return Ok(id.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot make {shown}: {e}"))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    // Written whole under another name first: a crash leaves no half id.
    let tmp = data_dir.join(format!("{ID_FILE}.{id}.tmp"));
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_the_label() {
        assert_eq!(Ownership::of(Some("a"), Some("a")), Ownership::Ours);
        assert_eq!(Ownership::of(Some("a"), Some("b")), Ownership::Other);
        assert_eq!(Ownership::of(Some("a"), None), Ownership::Unlabelled);
        assert_eq!(Ownership::of(None, Some("b")), Ownership::Ours);
        assert_eq!(Ownership::of(None, None), Ownership::Ours);
    }

    #[test]
    fn the_id_is_kept_in_the_data_dir_unless_given() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve(&data, None).unwrap();
        assert_eq!(resolve(&data, None).unwrap(), first, "stable across starts");
        check(&first).unwrap();
        let other = tempfile::tempdir().unwrap();
        assert_ne!(resolve(other.path(), None).unwrap(), first);
        assert_eq!(resolve(&data, Some("staging")).unwrap(), "staging");
        assert!(resolve(&data, Some("no spaces")).is_err());
        assert!(resolve(&data, Some("")).is_err());
        std::fs::write(data.join(ID_FILE), "bad id\n").unwrap();
        assert!(resolve(&data, None).unwrap_err().contains("deployment id"));
    }
}
