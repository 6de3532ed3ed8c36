//! Class codes and recovery codes: made at random from letters and digits
//! without look-alikes, read as typed.
/// Characters of a class code: 12 of 32 symbols is 60 bits. At the default
/// limit on wrong codes (10 a minute per address), one address guessing
/// for a year finds one of a thousand classes with odds of 5 in a billion,
/// a whole IPv6 /48 (65,536 limited /64s) with odds of 3 in 10,000.
pub const CLASS_CODE_LEN: usize = 12;

/// A class code: letters and digits without look-alikes.
pub(super) fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..CLASS_CODE_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A recovery code: 16 of 32 symbols (80 bits), shown in groups of four.
pub(super) fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw: Vec<char> = (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    raw.chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed: case, spaces and dashes do not matter.
pub(super) fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub(super) fn recovery_hash(code: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(normalize_code(code).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn codes_are_read_as_typed() {
        assert_eq!(normalize_code(" abcd-efgh 2345 "), "ABCDEFGH2345");
        assert_eq!(new_code().len(), CLASS_CODE_LEN);
        assert_eq!(normalize_code(&new_recovery_code()).len(), 16);
    }
}
