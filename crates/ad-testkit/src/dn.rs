//! Distinguished names: parsing, escaping (RFC 4514, with AD's `\0A` style for control
//! characters) and the normalized form used as the directory's case-insensitive key.

use crate::error::{Result, TestkitError};

/// One relative distinguished name: attribute type and unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rdn {
    pub(crate) attr: String,
    pub(crate) value: String,
}

/// Parses a DN into its RDNs (leftmost first). The empty string is the empty DN.
pub(crate) fn parse(dn: &str) -> Result<Vec<Rdn>> {
    let invalid = |reason: &str| TestkitError::InvalidDn {
        dn: dn.to_string(),
        reason: reason.to_string(),
    };
    if dn.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for component in split_unescaped(dn, ',') {
        let Some((attr, value)) = split_once_unescaped(component, '=') else {
            return Err(invalid("an RDN has no '='"));
        };
        let attr = attr.trim();
        if attr.is_empty()
            || !attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(invalid("bad attribute type in an RDN"));
        }
        let raw = trim_unescaped(value);
        let value = unescape(raw).ok_or_else(|| invalid("bad escape in an RDN value"))?;
        if value.is_empty() {
            return Err(invalid("empty RDN value"));
        }
        out.push(Rdn {
            attr: attr.to_string(),
            value,
        });
    }
    Ok(out)
}

/// Renders RDNs back to a DN string, escaping values.
pub(crate) fn render(rdns: &[Rdn]) -> String {
    rdns.iter()
        .map(|r| format!("{}={}", r.attr, escape_value(&r.value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The normalized (lower-case, re-escaped, whitespace-free) form of a DN: the directory key.
/// A DN that does not parse is normalized leniently (trimmed and lower-cased).
pub(crate) fn normalize(dn: &str) -> String {
    match parse(dn) {
        Ok(rdns) => rdns
            .iter()
            .map(|r| {
                format!(
                    "{}={}",
                    r.attr.to_ascii_lowercase(),
                    escape_value(&r.value.to_lowercase())
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => dn.trim().to_lowercase(),
    }
}

/// Escapes an attribute value for use in a DN (RFC 4514; control characters as `\XX`,
/// which is how AD shows the line feed of a tombstone name: `\0A`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let count = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == count => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Undoes RDN value escaping; `None` on a dangling or non-UTF-8 escape.
fn unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = *bytes.get(i)?;
        if b == b'\\' {
            let next = *bytes.get(i + 1)?;
            let hex = bytes.get(i + 2).and_then(|&lo| {
                let hi = (next as char).to_digit(16)?;
                let lo = (lo as char).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()
            });
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
            } else {
                out.push(next);
                i += 2;
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits on a separator that is not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(s.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// `s` split around the first `target` that is not escaped by a backslash.
fn split_once_unescaped(s: &str, target: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == target {
            return Some((s.get(..i)?, s.get(i + c.len_utf8()..)?));
        }
    }
    None
}

/// Trims surrounding spaces, keeping a trailing space that is escaped.
fn trim_unescaped(s: &str) -> &str {
    let mut s = s.trim_start();
    while let Some(before) = s.strip_suffix(' ') {
        // An odd number of backslashes before this space escapes it.
        let backslashes = before.bytes().rev().take_while(|&b| b == b'\\').count();
        if backslashes % 2 == 1 {
            break;
        }
        s = before;
    }
    s
}

/// The normalized parent of a normalized DN (`""` for a single RDN).
pub(crate) fn parent_of_normalized(norm: &str) -> &str {
    split_once_unescaped(norm, ',').map_or("", |(_, parent)| parent)
}

/// Whether normalized `dn` equals or lies under normalized `base`.
pub(crate) fn is_within(dn: &str, base: &str) -> bool {
    if base.is_empty() {
        return true;
    }
    if dn == base {
        return true;
    }
    if dn.len() <= base.len() + 1 || !dn.ends_with(base) {
        return false;
    }
    let cut = dn.len() - base.len() - 1;
    if dn.as_bytes().get(cut) != Some(&b',') {
        return false;
    }
    let backslashes = dn.as_bytes()[..cut]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    backslashes % 2 == 0
}

/// Whether `dn` equals or lies under `base`, compared the way the directory compares DNs
/// (RFC 4514: case, spaces around separators and escapes do not matter).
pub fn within(dn: &str, base: &str) -> bool {
    is_within(&normalize(dn), &normalize(base))
}

/// The DNS domain named by the `DC=` components of a DN (`corp.example.test`).
pub(crate) fn dns_domain(dn: &str) -> String {
    parse(dn)
        .unwrap_or_default()
        .iter()
        .filter(|r| r.attr.eq_ignore_ascii_case("dc"))
        .map(|r| r.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

/// Replaces the `old` prefix-parent of `dn` with `new` (both as given, not normalized):
/// used when a subtree moves. `dn` must be within `old`.
pub(crate) fn rebase(dn: &str, old: &str, new: &str) -> Option<String> {
    let rdns = parse(dn).ok()?;
    let old_rdns = parse(old).ok()?;
    let new_rdns = parse(new).ok()?;
    if rdns.len() < old_rdns.len() {
        return None;
    }
    let keep = rdns.len() - old_rdns.len();
    let mut out: Vec<Rdn> = rdns.into_iter().take(keep).collect();
    out.extend(new_rdns);
    Some(render(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_commas_and_hex() {
        let rdns = parse("CN=Smith\\, John,OU=Sales,DC=corp").unwrap();
        assert_eq!(rdns.len(), 3);
        assert_eq!(rdns[0].value, "Smith, John");
        let t = parse("CN=Jo\\0ADEL:abc,CN=Deleted Objects").unwrap();
        assert_eq!(t[0].value, "Jo\nDEL:abc");
        assert_eq!(render(&t), "CN=Jo\\0ADEL:abc,CN=Deleted Objects");
    }

    #[test]
    fn normalizes_case_and_spaces() {
        assert_eq!(
            normalize("CN=John Smith, OU=Sales ,DC=Corp"),
            normalize("cn=john smith,ou=sales,dc=corp")
        );
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn within_respects_escapes() {
        let base = normalize("DC=corp,DC=example");
        assert!(is_within(&normalize("CN=a,DC=corp,DC=example"), &base));
        assert!(is_within(&base, &base));
        assert!(!is_within(&normalize("DC=xcorp,DC=example"), &base));
        assert!(!is_within(
            "cn=a\\,dc=corp,dc=example",
            "dc=corp,dc=example"
        ));
        assert_eq!(parent_of_normalized("cn=a\\,b,ou=x,dc=y"), "ou=x,dc=y");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("not a dn").is_err());
        assert!(parse("CN=,DC=x").is_err());
        assert!(parse("CN=a\\").is_err());
    }

    #[test]
    fn rebases_subtrees() {
        assert_eq!(
            rebase("CN=u,OU=Old,DC=x", "OU=Old,DC=x", "OU=New,OU=P,DC=x").unwrap(),
            "CN=u,OU=New,OU=P,DC=x"
        );
        assert_eq!(
            dns_domain("OU=a,DC=Corp,DC=Example,DC=test"),
            "corp.example.test"
        );
    }
}
