//! One person, one spelling. Every identity that enters the server (a request's actor,
//! triggering actor and commit author, a config user's name and logins, a comment's
//! author, an SSO claim, a login the forge lists) becomes an [`Identity`] once, so that
//! `alice `, `Alice`, fullwidth `ａｌｉｃｅ` and `Alice <alice@example.com>` compare as the
//! person they name, and so that strings that only look like a name are refused:
//!
//! - characters nobody sees (controls, format characters such as U+200B or U+FEFF,
//!   other default-ignorable code points, private-use and unassigned code points, line
//!   and paragraph separators) are refused wherever they are;
//! - `Name <address>` (how git writes an author) becomes the address;
//! - the rest is put in Unicode compatibility caseless form (Unicode §3.13, D146: NFD,
//!   full case folding, NFKD, full case folding again, then composed to NFKC), trimmed,
//!   with inner runs of white space made one space;
//! - each part between `@` and `.` must be single-script (UTS #39 mixed-script
//!   detection, on augmented script sets so that Japanese or Korean mixes pass), so a
//!   Cyrillic `а` in a Latin name is refused; and a name that is not ASCII but whose
//!   UTS #39 skeleton is (whole-script Cyrillic `аое`, Latin `ɑlice`) is refused as a
//!   look-alike of an ASCII name.
//!
//! Full case folding (CaseFolding.txt, statuses C and F, from the `caseless` crate) is
//! the operation Unicode defines for caseless matching; `char::to_lowercase` is a display
//! mapping and leaves pairs such as `ß`/`SS` or `ς`/`Σ` apart.

use std::fmt;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};
use unicode_security::MixedScript;

/// The longest identity, in characters, after normalisation.
pub const MAX_CHARS: usize = 256;

/// An identity in its normal form; built only by [`Identity::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identity(String);

/// Why a string is not an identity. The caller says which field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_CHARS} characters")]
    TooLong,
    /// `position` counts characters from 1.
    #[error("contains U+{:04X} at character {position}, {what}; type the name again without it", u32::from(*ch))]
    Invisible {
        ch: char,
        position: usize,
        what: &'static str,
    },
    #[error("`{0}` names no address between `<` and `>`")]
    NoAddress(String),
    #[error("`{part}` mixes scripts ({scripts}); a look-alike of a name is not another person")]
    MixedScript { part: String, scripts: String },
    #[error("`{name}` looks like `{looks_like}` but is spelled with other letters")]
    Confusable { name: String, looks_like: String },
}

impl Identity {
    /// Normalises and checks `raw` (see the module documentation).
    pub fn parse(raw: &str) -> Result<Identity, IdentityError> {
        if let Some((position, ch, what)) = first_invisible(raw) {
            return Err(IdentityError::Invisible { ch, position, what });
        }
        let folded = if raw.is_ascii() {
            raw.to_ascii_lowercase()
        } else {
            fold(raw)
        };
        // Folding can turn a visible character into one we refuse (it never should, but
        // the check is cheap and the guarantee is the point).
        if let Some((position, ch, what)) = first_invisible(&folded) {
            return Err(IdentityError::Invisible { ch, position, what });
        }
        let text = address_of(folded.trim())?;
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(IdentityError::Empty);
        }
        if text.chars().count() > MAX_CHARS {
            return Err(IdentityError::TooLong);
        }
        if !text.is_ascii() {
            check_scripts(&text)?;
        }
        Ok(Identity(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `raw`, normalised, is this identity (a string that is not an identity is
    /// no one).
    pub fn is(&self, raw: &str) -> bool {
        Identity::parse(raw).is_ok_and(|i| i == *self)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Identity> for String {
    fn from(i: Identity) -> String {
        i.0
    }
}

impl TryFrom<String> for Identity {
    type Error = IdentityError;

    fn try_from(s: String) -> Result<Identity, IdentityError> {
        Identity::parse(&s)
    }
}

impl std::str::FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Identity, IdentityError> {
        Identity::parse(s)
    }
}

/// Compatibility caseless form (Unicode D146), composed.
fn fold(s: &str) -> String {
    s.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The first character nobody sees, with its 1-based position and what it is.
fn first_invisible(s: &str) -> Option<(usize, char, &'static str)> {
    s.chars()
        .enumerate()
        .find_map(|(i, c)| invisible(c).map(|what| (i + 1, c, what)))
}

/// Whether nobody sees `c`: a control, format, private-use, unassigned or otherwise
/// default-ignorable character, or a line or paragraph separator.
pub fn is_invisible(c: char) -> bool {
    invisible(c).is_some()
}

fn invisible(c: char) -> Option<&'static str> {
    if c.is_ascii() {
        return c.is_ascii_control().then_some("a control character");
    }
    Some(match c.general_category() {
        GeneralCategory::Control => "a control character",
        GeneralCategory::Format => "an invisible format character",
        GeneralCategory::PrivateUse => "a private-use character",
        GeneralCategory::Unassigned | GeneralCategory::Surrogate => "an unassigned code point",
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => "a line or paragraph separator",
        _ if default_ignorable(c) => "an invisible character",
        _ => return None,
    })
}

/// Default_Ignorable_Code_Point, from the UTS #39 data: the skeleton drops exactly those
/// (a character that decomposes keeps its visible parts).
fn default_ignorable(c: char) -> bool {
    let mut buf = [0u8; 4];
    unicode_security::skeleton(c.encode_utf8(&mut buf)).next().is_none()
}

/// `Name <address>` is the address; anything else is itself.
fn address_of(s: &str) -> Result<&str, IdentityError> {
    let Some(inner) = s.strip_suffix('>') else {
        return Ok(s);
    };
    let Some(lt) = inner.rfind('<') else {
        return Ok(s);
    };
    let address = inner[lt + 1..].trim();
    if address.is_empty() {
        return Err(IdentityError::NoAddress(s.to_string()));
    }
    Ok(address)
}

/// UTS #39: every part single-script, and no non-ASCII name that is an ASCII one's double.
fn check_scripts(text: &str) -> Result<(), IdentityError> {
    for part in text.split(['@', '.']).filter(|p| !p.is_empty()) {
        if !part.is_single_script() {
            return Err(IdentityError::MixedScript {
                part: part.to_string(),
                scripts: scripts_of(part),
            });
        }
    }
    let skeleton: String = unicode_security::skeleton(text).collect();
    if skeleton.is_ascii() {
        return Err(IdentityError::Confusable {
            name: text.to_string(),
            looks_like: skeleton,
        });
    }
    Ok(())
}

/// The scripts of `s`'s letters, by name, in order of appearance.
fn scripts_of(s: &str) -> String {
    let mut seen: Vec<Script> = Vec::new();
    for c in s.chars() {
        let sc = c.script();
        if !matches!(sc, Script::Common | Script::Inherited | Script::Unknown) && !seen.contains(&sc) {
            seen.push(sc);
        }
    }
    seen.iter().map(|s| s.full_name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        Identity::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}")).0
    }

    fn err(raw: &str) -> IdentityError {
        Identity::parse(raw).expect_err(raw)
    }

    #[test]
    fn case_and_white_space_do_not_make_another_person() {
        for raw in ["alice", "Alice", "ALICE", " alice", "alice ", "\u{a0}alice\u{3000}"] {
            assert_eq!(ok(raw), "alice", "{raw:?}");
        }
        assert_eq!(ok("Alice   Smith"), "alice smith");
        assert_eq!(ok("Alice\u{2003}Smith"), "alice smith", "an em space is a space");
    }

    #[test]
    fn compatibility_forms_are_the_letters_they_show() {
        assert_eq!(ok("ａｌｉｃｅ"), "alice", "fullwidth");
        assert_eq!(ok("Ａｌｉｃｅ"), "alice");
        assert_eq!(ok("ﬁona"), "fiona", "the fi ligature");
        assert_eq!(ok("𝐚𝐥𝐢𝐜𝐞"), "alice", "mathematical bold");
        assert_eq!(ok("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"), "alice@example.com");
    }

    #[test]
    fn full_case_folding_not_just_ascii() {
        assert_eq!(ok("STRASSE"), ok("straße"));
        assert_eq!(ok("straße"), "strasse");
        assert_eq!(ok("ΣΊΣΥΦΟΣ"), ok("σίσυφος"));
        assert_eq!(ok("σίσυφος"), ok("σίσυφοσ"), "final sigma folds to sigma");
        assert_eq!(ok("İlknur"), "i\u{307}lknur", "dotted capital I folds with its dot");
        assert_eq!(ok("ÉLODIE"), "élodie");
        assert_eq!(ok("E\u{301}lodie"), "élodie", "decomposed and precomposed are one");
        assert_eq!(ok("ǅemal"), "džemal", "a titlecase digraph");
        assert_eq!(ok("ᏣᎳᎩ"), ok("ꮳꮃꭹ"), "Cherokee folds to its capitals");
    }

    #[test]
    fn name_and_address_is_the_address() {
        assert_eq!(ok("Alice <alice@example.com>"), "alice@example.com");
        assert_eq!(ok("Alice Smith <Alice@Example.COM>"), "alice@example.com");
        assert_eq!(ok("<alice@example.com>"), "alice@example.com");
        assert_eq!(ok("Alice < alice@example.com > "), "alice@example.com");
        assert_eq!(
            ok("Alice ＜alice@example.com＞"),
            "alice@example.com",
            "fullwidth brackets"
        );
        assert_eq!(ok("a>b"), "a>b", "no `<`: not an address form");
        assert_eq!(
            err("Alice <>"),
            IdentityError::NoAddress("alice <>".into()),
            "the name is folded"
        );
        assert_eq!(
            err("Alice < >").to_string(),
            "`alice < >` names no address between `<` and `>`"
        );
    }

    #[test]
    fn invisible_characters_are_refused_wherever_they_are() {
        let cases = [
            ("alice\u{200B}", 6, 0x200B, "an invisible format character"),
            ("\u{FEFF}alice", 1, 0xFEFF, "an invisible format character"),
            ("al\u{200E}ice", 3, 0x200E, "an invisible format character"),
            ("ali\u{00AD}ce", 4, 0xAD, "an invisible format character"),
            ("alice\u{2060}", 6, 0x2060, "an invisible format character"),
            ("alice\n", 6, 0x0A, "a control character"),
            ("al\tice", 3, 0x09, "a control character"),
            ("alice\u{0}", 6, 0, "a control character"),
            ("alice\u{85}", 6, 0x85, "a control character"),
            ("alice\u{7F}", 6, 0x7F, "a control character"),
            ("alice\u{2028}", 6, 0x2028, "a line or paragraph separator"),
            ("alice\u{E000}", 6, 0xE000, "a private-use character"),
            ("alice\u{FE0F}", 6, 0xFE0F, "an invisible character"),
            ("ali\u{34F}ce", 4, 0x34F, "an invisible character"),
            ("alice\u{3164}", 6, 0x3164, "an invisible character"),
            ("alice\u{E0041}", 6, 0xE0041, "an invisible format character"),
            ("alice\u{50000}", 6, 0x50000, "an unassigned code point"),
        ];
        for (raw, position, cp, what) in cases {
            let ch = char::from_u32(cp).unwrap();
            assert_eq!(err(raw), IdentityError::Invisible { ch, position, what }, "{raw:?}");
        }
        assert_eq!(
            err("alice\u{200B}").to_string(),
            "contains U+200B at character 6, an invisible format character; type the name again without it"
        );
    }

    #[test]
    fn mixed_scripts_are_refused() {
        let e = err("\u{430}lice");
        assert_eq!(
            e,
            IdentityError::MixedScript {
                part: "\u{430}lice".into(),
                scripts: "Cyrillic, Latin".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "`\u{430}lice` mixes scripts (Cyrillic, Latin); a look-alike of a name is not another person"
        );
        assert!(
            matches!(err("\u{410}lice"), IdentityError::MixedScript { .. }),
            "capital Cyrillic A"
        );
        assert!(
            matches!(err("alice@ex\u{430}mple.com"), IdentityError::MixedScript { part, .. } if part == "ex\u{430}mple")
        );
        assert!(
            matches!(err("p\u{3bf}stgres"), IdentityError::MixedScript { .. }),
            "Greek omicron"
        );
        assert!(
            matches!(err("alice-\u{13a0}"), IdentityError::MixedScript { .. }),
            "Cherokee"
        );
    }

    #[test]
    fn whole_script_look_alikes_of_ascii_names_are_refused() {
        let e = err("\u{430}\u{43e}\u{435}");
        assert_eq!(
            e,
            IdentityError::Confusable {
                name: "\u{430}\u{43e}\u{435}".into(),
                looks_like: "aoe".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "`аое` looks like `aoe` but is spelled with other letters"
        );
        assert!(
            matches!(err("\u{251}lice"), IdentityError::Confusable { .. }),
            "Latin alpha"
        );
        assert!(
            matches!(err("al\u{131}ce"), IdentityError::Confusable { .. }),
            "dotless i"
        );
    }

    #[test]
    fn names_in_other_scripts_are_people() {
        for raw in [
            "иван",
            "Иван Петров",
            "山田たろう",
            "김민준",
            "josé",
            "müller@example.de",
            "françois.dupont",
            "øystein",
            "ζωή",
            "محمد",
            "иван@пример.рф",
            "alice.иван",
        ] {
            Identity::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        }
    }

    #[test]
    fn ordinary_logins_and_addresses_pass_unchanged() {
        for raw in [
            "alice",
            "alice-gh",
            "alice_gl",
            "dependabot[bot]",
            "12345+alice@users.noreply.github.com",
            "svc:deployer",
            "repo:acme/web:ref:refs/heads/main",
            "o'brien",
        ] {
            assert_eq!(ok(raw), raw, "{raw:?}");
        }
    }

    #[test]
    fn empty_and_long_are_refused() {
        for raw in ["", " ", "\u{3000}", "<>"] {
            assert!(
                matches!(err(raw), IdentityError::Empty | IdentityError::NoAddress(_)),
                "{raw:?}"
            );
        }
        assert_eq!(err("   "), IdentityError::Empty);
        assert_eq!(ok(&"a".repeat(MAX_CHARS)).len(), MAX_CHARS);
        assert_eq!(err(&"a".repeat(MAX_CHARS + 1)), IdentityError::TooLong);
        assert_eq!(
            err(&"é".repeat(MAX_CHARS + 1)),
            IdentityError::TooLong,
            "counted in characters"
        );
    }

    #[test]
    fn the_normal_form_is_its_own_normal_form() {
        for raw in [
            "Alice <Alice@Example.com>",
            "ａｌｉｃｅ",
            "straße",
            "ΣΊΣΥΦΟΣ",
            "ᾈ",
            "ἈΘΗΝᾼ",
            "İlknur",
            "ǅemal",
            "ﬃ",
            "Ⅻ",
            "㎒",
            "山田たろう",
            "Иван Петров",
        ] {
            let once = ok(raw);
            assert_eq!(ok(&once), once, "{raw:?}");
        }
    }

    #[test]
    fn the_ascii_path_agrees_with_the_full_one() {
        for raw in [
            "Alice",
            "ALICE <A@B.C>",
            " x  y ",
            "a-b_c.d@e.f",
            "~!#$%^&*()[]{}|;:'\",./?",
        ] {
            assert_eq!(raw.to_ascii_lowercase(), fold(raw), "{raw:?}");
        }
        for b in 0x20u8..0x7f {
            let s = (b as char).to_string();
            assert_eq!(s.to_ascii_lowercase(), fold(&s), "{s:?}");
        }
    }

    #[test]
    fn is_compares_normal_forms() {
        let alice = Identity::parse("alice@example.com").unwrap();
        assert!(alice.is("Alice <ALICE@example.com>"));
        assert!(alice.is(" alice@example.com "));
        assert!(!alice.is("alice@example.com\u{200B}"));
        assert!(!alice.is("bob@example.com"));
        assert_eq!(alice.to_string(), "alice@example.com");
    }

    #[test]
    fn serde_validates() {
        let i: Identity = serde_json::from_value(serde_json::json!("Alice")).unwrap();
        assert_eq!(i.as_str(), "alice");
        assert_eq!(serde_json::to_value(&i).unwrap(), "alice");
        assert!(serde_json::from_value::<Identity>(serde_json::json!("al\u{200B}ice")).is_err());
    }
}
