//! Client input echoed in an error message, cut short: a refused name or
//! id may be megabytes long, and the error (and the log line, and the
//! socket frame) carries only its start.

use std::borrow::Cow;

/// Characters of a client-given name or id an error repeats.
pub const ECHO_CHARS: usize = 64;

/// Characters of a parser's reason (serde's, which may quote the value it
/// refused) an error repeats.
pub const REASON_CHARS: usize = 256;

/// `text`'s first `max` characters (cut on a char boundary), with "…" when
/// there was more.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A client-given name or id as an error quotes it: in double quotes with
/// Rust's escapes, at most ECHO_CHARS characters of it, "…" when cut.
pub fn echo(input: &str) -> String {
    format!("{:?}", clip(input, ECHO_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(echo("alice"), "\"alice\"");
        assert_eq!(echo(""), "\"\"");
        assert_eq!(echo("a\"b\n"), "\"a\\\"b\\n\"");
        let exact = "x".repeat(ECHO_CHARS);
        assert_eq!(echo(&exact), format!("\"{exact}\""));
    }

    #[test]
    fn long_input_is_cut_on_a_char_boundary() {
        let long = "é".repeat(1 << 20);
        let e = echo(&long);
        assert_eq!(e, format!("\"{}…\"", "é".repeat(ECHO_CHARS)));
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
        assert!(matches!(clip("abc", 3), Cow::Borrowed(_)));
    }
}
