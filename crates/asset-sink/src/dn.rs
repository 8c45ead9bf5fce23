//! Just enough DN parsing for payloads: the DNS domain (`DC=` components), the first `OU=`,
//! and the `CN=` of a group DN. Escapes (`\,`) are respected.

use std::borrow::Cow;

/// The RDN components of a DN, in order, as (attribute, value) with single-character escapes
/// removed from the value.
fn components(dn: &str) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    let mut rest = dn;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bytes = rest.as_bytes();
        let mut end = bytes.len();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b',' | b';' => {
                    end = i;
                    break;
                }
                _ => i += 1,
            }
        }
        let rdn = rest.get(..end).unwrap_or(rest);
        rest = rest.get(end + 1..).unwrap_or("");
        let (attr, value) = rdn.split_once('=').unwrap_or(("", rdn));
        Some((attr.trim(), unescape(value.trim())))
    })
}

fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `CN=x,OU=y,DC=corp,DC=example,DC=test` → `corp.example.test`.
pub(crate) fn dns_domain(dn: &str) -> Option<String> {
    let mut labels: Vec<Cow<'_, str>> = Vec::new();
    for (attr, value) in components(dn) {
        if attr.eq_ignore_ascii_case("DC") {
            labels.push(value);
        } else if !labels.is_empty() {
            labels.clear();
        }
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

/// The first `OU=` value (the object's own organizational unit).
pub(crate) fn first_ou(dn: &str) -> Option<Cow<'_, str>> {
    components(dn)
        .find(|(attr, _)| attr.eq_ignore_ascii_case("OU"))
        .map(|(_, value)| value)
}

/// The value of the first RDN (`CN=GG-Backend,OU=…` → `GG-Backend`).
pub(crate) fn rdn_value(dn: &str) -> Option<Cow<'_, str>> {
    components(dn)
        .next()
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_shapes() {
        let dn = r"CN=Doe\, John,OU=Sales\, EMEA,OU=Users,DC=corp,DC=example,DC=test";
        assert_eq!(dns_domain(dn).as_deref(), Some("corp.example.test"));
        assert_eq!(first_ou(dn).as_deref(), Some("Sales, EMEA"));
        assert_eq!(rdn_value(dn).as_deref(), Some("Doe, John"));
        assert_eq!(dns_domain("CN=x,CN=Users"), None);
        assert_eq!(first_ou("CN=x,CN=Users,DC=a"), None);
        assert_eq!(rdn_value(""), None);
        assert_eq!(rdn_value("trailing\\").as_deref(), Some("trailing"));
    }
}
