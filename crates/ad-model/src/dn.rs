//! Distinguished names as a DC writes them (RFC 4514): the components in order, each value
//! unescaped exactly — `\,` and the other single-character escapes, and hex pairs (`\23`,
//! `\0A`, and UTF-8 sequences such as `\C3\A9` for `é`), which is how a DC writes a leading
//! `#`, a leading or trailing space, control characters and, from some tools, non-ASCII.
//!
//! Written by hand: the `ldap3` parser is not exposed, and the crates that parse DNs carry an
//! LDAP stack (`ad-model` has no LDAP dependency). It reads; it never normalizes or rebuilds a
//! DN, and it never fails: an odd DN yields odd components, not a panic.

use std::borrow::Cow;

/// One RDN of a DN: its attribute type (`CN`, `OU`, `DC`) and its unescaped value. For a
/// multi-valued RDN (`CN=a+UID=b`; AD does not create them) the first value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn<'a> {
    /// The attribute type as written (`CN`, `ou`).
    pub attribute: &'a str,
    /// The value, unescaped.
    pub value: Cow<'a, str>,
}

/// The RDNs of `dn`, first (the object's own name) to last (the domain's `DC=`).
pub fn components(dn: &str) -> impl Iterator<Item = Rdn<'_>> {
    let mut rest = Some(dn);
    std::iter::from_fn(move || {
        let text = rest?;
        if text.trim().is_empty() {
            rest = None;
            return None;
        }
        let (rdn, tail) = split_unescaped(text, &[',', ';']);
        rest = tail;
        let (attribute, raw) = rdn.split_once('=').unwrap_or(("", rdn));
        // The first value of a multi-valued RDN.
        let (raw, _) = split_unescaped(raw, &['+']);
        Some(Rdn {
            attribute: attribute.trim(),
            value: unescape_value(trim_unescaped(raw)),
        })
    })
}

/// The value of the first RDN (`CN=GG Sales\, EMEA,OU=…` → `GG Sales, EMEA`); `None` when
/// empty.
pub fn rdn_value(dn: &str) -> Option<Cow<'_, str>> {
    components(dn)
        .next()
        .map(|r| r.value)
        .filter(|v| !v.is_empty())
}

/// The value of the first `OU=` component (the object's nearest organizational unit).
pub fn first_ou(dn: &str) -> Option<Cow<'_, str>> {
    components(dn)
        .find(|r| r.attribute.eq_ignore_ascii_case("OU"))
        .map(|r| r.value)
}

/// The DNS domain of the trailing `DC=` components: `…,DC=corp,DC=example,DC=test` →
/// `corp.example.test`.
pub fn dns_domain(dn: &str) -> Option<String> {
    let mut labels: Vec<Cow<'_, str>> = Vec::new();
    for rdn in components(dn) {
        if rdn.attribute.eq_ignore_ascii_case("DC") {
            labels.push(rdn.value);
        } else if !labels.is_empty() {
            labels.clear();
        }
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

/// One spelling of `dn` for comparisons: every attribute type and value lower-cased (AD
/// compares names without case), values unescaped and escaped again the one RFC 4514 way,
/// no spaces around `,` or `=`. `DC=Lab, dc=Example,DC=test` and `dc=lab,dc=example,dc=test`
/// have the same canonical form; DNs that name different objects never do.
///
/// Only for comparing and indexing: the DN a DC returned is what is stored and sent.
pub fn canonical(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in components(dn).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&rdn.attribute.to_lowercase());
        out.push('=');
        escape_into(&rdn.value.to_lowercase(), &mut out);
    }
    out
}

/// Whether `dn` is `base` or below it, whatever the spelling of either (compared by their
/// [`canonical`] components). An empty `base` holds nothing.
pub fn is_within(dn: &str, base: &str) -> bool {
    let dn: Vec<String> = components(dn).map(canonical_rdn).collect();
    let base: Vec<String> = components(base).map(canonical_rdn).collect();
    !base.is_empty() && dn.len() >= base.len() && dn[dn.len() - base.len()..] == base[..]
}

fn canonical_rdn(rdn: Rdn<'_>) -> String {
    let mut out = rdn.attribute.to_lowercase();
    out.push('=');
    escape_into(&rdn.value.to_lowercase(), &mut out);
    out
}

/// RFC 4514 escaping of one value: `\` before `,+"\<>;=`, a leading `#` or space and a
/// trailing space; control characters as `\XX`.
fn escape_into(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

/// Unescape one attribute value: `\` + two hex digits is a byte, `\` + any other character
/// is that character. The bytes are UTF-8 (invalid sequences become U+FFFD). A trailing lone
/// `\` is dropped.
pub fn unescape_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(first) = chars.next() else {
            break;
        };
        let hex = first
            .to_digit(16)
            .zip(chars.peek().and_then(|c| c.to_digit(16)));
        match hex {
            Some((high, low)) => {
                chars.next();
                // Two hex digits: at most 0xFF.
                bytes.push(u8::try_from(high * 16 + low).unwrap_or(u8::MAX));
            }
            None => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(first.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// `text` split at the first separator that no backslash escapes: (before, after it).
fn split_unescaped<'a>(text: &'a str, separators: &[char]) -> (&'a str, Option<&'a str>) {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if separators.contains(&c) {
            return (text.get(..i).unwrap_or(text), text.get(i + c.len_utf8()..));
        }
    }
    (text, None)
}

/// Spaces around a value are not part of it, unless escaped (`\ ` at the end).
fn trim_unescaped(raw: &str) -> &str {
    let mut text = raw.trim_start_matches(' ');
    while let Some(before) = text.strip_suffix(' ') {
        let backslashes = before.bytes().rev().take_while(|&b| b == b'\\').count();
        if backslashes % 2 == 1 {
            break;
        }
        text = before;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_forms_agree_whatever_the_spelling() {
        let a = canonical("OU=E2E, DC=Lab, dc=Example,DC=test");
        assert_eq!(a, "ou=e2e,dc=lab,dc=example,dc=test");
        assert_eq!(a, canonical("ou=e2e,dc=lab,dc=example,dc=test"));
        // The same comma, escaped two ways; an escaped comma is not a separator.
        assert_eq!(
            canonical("CN=Smith\\, John,OU=x"),
            canonical("cn=smith\\2C john,ou=X")
        );
        assert_ne!(canonical("CN=a\\,OU=b,DC=x"), canonical("CN=a,OU=b,DC=x"));
        assert_eq!(canonical("CN=\\ lead,DC=x"), "cn=\\ lead,dc=x");
        assert_eq!(canonical("CN=Émile,DC=x"), canonical("cn=émile,dc=X"));
    }

    #[test]
    fn within_compares_components_not_text() {
        assert!(is_within(
            "CN=u,OU=E2E,DC=lab,DC=test",
            "ou=e2e, dc=LAB, dc=test"
        ));
        assert!(is_within("OU=E2E,DC=lab,DC=test", "OU=E2E,DC=lab,DC=test"));
        assert!(!is_within(
            "CN=u,OU=NotE2E,DC=lab,DC=test",
            "OU=E2E,DC=lab,DC=test"
        ));
        // A name that ends like the base after an escaped comma is not below it.
        assert!(!is_within(
            "CN=a\\,OU=E2E,DC=lab,DC=test",
            "OU=E2E,DC=lab,DC=test"
        ));
        assert!(!is_within("DC=lab,DC=test", "OU=E2E,DC=lab,DC=test"));
        assert!(!is_within("CN=u,DC=x", ""));
    }

    #[test]
    fn common_shapes() {
        let dn = r"CN=Doe\, John,OU=Sales\, EMEA,OU=Users,DC=corp,DC=example,DC=test";
        assert_eq!(dns_domain(dn).as_deref(), Some("corp.example.test"));
        assert_eq!(first_ou(dn).as_deref(), Some("Sales, EMEA"));
        assert_eq!(rdn_value(dn).as_deref(), Some("Doe, John"));
        assert_eq!(dns_domain("CN=x,CN=Users"), None);
        assert_eq!(first_ou("CN=x,CN=Users,DC=a"), None);
        assert_eq!(rdn_value(""), None);
        assert_eq!(rdn_value("CN=,DC=a"), None);
    }

    #[test]
    fn hex_escapes_and_spaces() {
        // A DC escapes a leading '#' and leading/trailing spaces; some tools hex-escape UTF-8.
        assert_eq!(rdn_value(r"CN=\23hash,DC=a").as_deref(), Some("#hash"));
        assert_eq!(rdn_value(r"CN=\20lead,DC=a").as_deref(), Some(" lead"));
        assert_eq!(rdn_value(r"CN=trail\ ,DC=a").as_deref(), Some("trail "));
        assert_eq!(rdn_value(r"CN=trail\20,DC=a").as_deref(), Some("trail "));
        assert_eq!(rdn_value(r"CN=Ren\C3\A9e,DC=a").as_deref(), Some("Renée"));
        assert_eq!(
            rdn_value(r"CN=line\0Abreak,DC=a").as_deref(),
            Some("line\nbreak")
        );
        assert_eq!(rdn_value(r"CN=a\\,DC=b").as_deref(), Some(r"a\"));
        assert_eq!(rdn_value(r"CN = spaced  ,DC=a").as_deref(), Some("spaced"));
        assert_eq!(
            rdn_value(r"CN=Zoë Ångström,DC=a").as_deref(),
            Some("Zoë Ångström")
        );
        // Invalid UTF-8 in hex pairs: replaced, not a panic.
        assert_eq!(rdn_value(r"CN=\FF,DC=a").as_deref(), Some("\u{fffd}"));
        // A dangling backslash is dropped.
        assert_eq!(rdn_value(r"CN=x\").as_deref(), Some("x"));
        // The first value of a multi-valued RDN.
        assert_eq!(rdn_value(r"CN=a+UID=b,DC=c").as_deref(), Some("a"));
        assert_eq!(rdn_value(r"CN=a\+b,DC=c").as_deref(), Some("a+b"));
    }

    /// RFC 4514 escaping, as a DC writes DNs.
    fn escape(value: &str) -> String {
        let mut out = String::new();
        let last = value.chars().count().saturating_sub(1);
        for (i, c) in value.chars().enumerate() {
            match c {
                ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                    out.push('\\');
                    out.push(c);
                }
                '#' if i == 0 => out.push_str(r"\23"),
                ' ' if i == 0 || i == last => out.push_str(r"\20"),
                '\n' => out.push_str(r"\0A"),
                _ => out.push(c),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn any_value_round_trips(cn in "\\PC{1,64}", ou in ".{1,64}", dc in "[a-z]{1,10}") {
            let dn = format!("CN={},OU={},DC={dc},DC=test", escape(&cn), escape(&ou));
            let (first, nearest_ou) = (rdn_value(&dn), first_ou(&dn));
            prop_assert_eq!(first.as_deref(), Some(cn.as_str()));
            prop_assert_eq!(nearest_ou.as_deref(), Some(ou.as_str()));
            prop_assert_eq!(dns_domain(&dn), Some(format!("{dc}.test")));
        }

        #[test]
        fn any_text_is_read_without_panic(dn in ".{0,200}") {
            let _ = components(&dn).count();
            let _ = dns_domain(&dn);
        }
    }
}
