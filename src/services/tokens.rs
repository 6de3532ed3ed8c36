//! API tokens as owners: what a token creates is owned by a keyed
//! fingerprint of it, never the token itself.

use sha2::{Digest, Sha256};

/// The fingerprint that owns what a token creates (kept in the store):
/// SHA-256 of the server's secret key and the token, so the store alone
/// does not let anyone test guesses of a token.
pub fn token_fingerprint(key: &[u8; 32], token: &str) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// The server's secret key for token fingerprints, in the data dir
/// (`token.key`, made on first start, readable by the owner only).
pub fn load_token_key(data_dir: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("token.key");
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    let tmp = data_dir.join("token.key.new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fingerprints_are_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_token_key(dir.path()).unwrap();
        assert_eq!(
            load_token_key(dir.path()).unwrap(),
            key,
            "kept across starts"
        );
        let plain = hex::encode(&Sha256::digest(b"s3cret")[..12]);
        let keyed = token_fingerprint(&key, "s3cret");
        assert_ne!(keyed, plain);
        assert_ne!(keyed, token_fingerprint(&[0; 32], "s3cret"));
        assert_eq!(keyed, token_fingerprint(&key, "s3cret"));
    }
}
