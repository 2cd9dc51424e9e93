//! Free text from the network: what counts as saying nothing, which characters a field
//! refuses, and how such text is shown safely on a terminal.

use crate::core::identity::is_invisible;

/// Whether `s` says nothing: empty once whitespace and invisible characters (controls,
/// format characters such as U+200B, other default-ignorables) are taken out.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

/// The first control character in `s` (1-based character position and the character).
/// `multiline` allows newline, carriage return and tab, as free text such as a reason
/// may have them; single-line fields (ids, names) allow none.
pub fn first_control(s: &str, multiline: bool) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
        .map(|(i, c)| (i + 1, c))
}

/// Why a field's text is refused, for a message naming the field.
pub fn control_message(s: &str, multiline: bool) -> Option<String> {
    first_control(s, multiline).map(|(at, c)| {
        format!(
            "contains the control character U+{:04X} at character {at}; control characters are not allowed",
            c as u32
        )
    })
}

/// `s` made safe to print on a terminal: every control character (escape sequences
/// included, as they start with one) and every line or paragraph separator is shown as
/// a visible `\u{..}` escape, so text from the network can neither drive the terminal
/// nor fake lines of the output. `keep_newlines` keeps `\n` (and tabs) where the layout
/// prints multi-line text; carriage returns are always escaped.
pub fn for_terminal(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let unsafe_char =
            c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if unsafe_char && !(keep_newlines && matches!(c, '\n' | '\t')) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_means_nothing_visible() {
        for s in ["", "  ", "\u{200B}", "\0", " \u{200B}\0\t\n", "\u{FEFF}\u{2060}"] {
            assert!(is_blank(s), "{s:?}");
        }
        for s in ["x", " no \u{200B}", "\0ok"] {
            assert!(!is_blank(s), "{s:?}");
        }
    }

    #[test]
    fn controls_are_found_with_their_position() {
        assert_eq!(first_control("ab\0c", true), Some((3, '\0')));
        assert_eq!(first_control("line\nnext\tx\r\n", true), None);
        assert_eq!(first_control("line\nnext", false), Some((5, '\n')));
        assert_eq!(first_control("a\u{1b}[2J", true), Some((2, '\u{1b}')));
        assert_eq!(first_control("a\u{85}", true), Some((2, '\u{85}')));
        assert!(control_message("a\0", true).unwrap().contains("U+0000 at character 2"));
    }

    #[test]
    fn terminal_text_shows_controls_as_escapes() {
        assert_eq!(for_terminal("ok\u{1b}[2J\rfake", false), "ok\\u{1b}[2J\\u{d}fake");
        assert_eq!(for_terminal("a\nb\tc", true), "a\nb\tc");
        assert_eq!(for_terminal("a\nb", false), "a\\u{a}b");
        assert_eq!(for_terminal("x\u{9b}31m\u{202E}", true), "x\\u{9b}31m\\u{202e}");
        assert_eq!(for_terminal("café ✓", false), "café ✓");
    }
}
