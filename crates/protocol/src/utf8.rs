//! Cutting a byte stream into chunks that do not split UTF-8 characters.

/// How many bytes of `buf` can be sent now without ending inside a UTF-8
/// character. Up to three trailing bytes that begin a character whose end has
/// not arrived yet are held back; bytes that are not UTF-8 at all are never
/// held back.
pub fn complete_prefix_len(buf: &[u8]) -> usize {
    let n = buf.len();
    // Look at most 3 bytes back for the start of the last character.
    for back in 1..=3.min(n) {
        let b = buf[n - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: keep looking for the lead
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return n,
        };
        return if need > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holds_back_incomplete_character() {
        let s = "héllo €".as_bytes();
        assert_eq!(complete_prefix_len(s), s.len());
        assert_eq!(complete_prefix_len(&s[..s.len() - 1]), s.len() - 3);
        assert_eq!(complete_prefix_len(&s[..2]), 1);
        assert_eq!(complete_prefix_len(b"\xff\xfe"), 2);
    }

    proptest! {
        #[test]
        fn chunks_of_valid_utf8_stay_valid(s in ".{0,64}", cut in 0usize..256) {
            let bytes = s.as_bytes();
            let cut = cut.min(bytes.len());
            let first = complete_prefix_len(&bytes[..cut]);
            prop_assert!(std::str::from_utf8(&bytes[..first]).is_ok());
            prop_assert!(cut - first <= 3);
        }
    }
}
