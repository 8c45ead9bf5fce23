//! Which attributes a search returns, and in what shape: `*`, `1.1`, explicit names,
//! constructed attributes (only by name), and Windows' MaxValRange ranged retrieval
//! (`member;range=0-1499`, `member;range=1500-*`).

use std::collections::HashSet;

use ldap3_proto::proto::LdapPartialAttribute;

use crate::dn;
use crate::entry::Entry;
use crate::fault::Malformation;

/// The constructed attribute AD computes for lockout / password expiry.
pub(crate) const COMPUTED_UAC: &str = "msDS-User-Account-Control-Computed";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requested {
    Plain(String),
    Range {
        name: String,
        low: usize,
        high: Option<usize>,
    },
}

/// A parsed attribute selection.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    all: bool,
    requested: Vec<Requested>,
}

/// Server settings that shape attribute values.
#[derive(Debug)]
pub(crate) struct Shape<'a> {
    pub(crate) max_val_range: usize,
    pub(crate) empty_plain_ranged: bool,
    pub(crate) malformed: &'a [Malformation],
    /// Announce the first chunk of a ranged attribute as `name;range=0-18446744073709551615`.
    pub(crate) absurd_range: bool,
}

impl Projection {
    /// From the request's attribute list. Empty (or containing `*`): all stored attributes.
    /// `1.1` alone: none.
    pub(crate) fn parse(attrs: &[String]) -> Self {
        let mut all = attrs.is_empty();
        let mut requested = Vec::new();
        for raw in attrs {
            let raw = raw.trim();
            if raw == "*" {
                all = true;
                continue;
            }
            if raw == "1.1" || raw.is_empty() || raw == "+" {
                continue;
            }
            let mut parts = raw.split(';');
            let name = parts.next().unwrap_or_default().to_string();
            let range = parts.find_map(|opt| {
                let (key, value) = opt.split_once('=')?;
                if !key.eq_ignore_ascii_case("range") {
                    return None;
                }
                let (low, high) = value.split_once('-')?;
                let low: usize = low.trim().parse().ok()?;
                let high = match high.trim() {
                    "*" => None,
                    h => Some(h.parse::<usize>().ok()?),
                };
                Some((low, high))
            });
            requested.push(match range {
                Some((low, high)) => Requested::Range { name, low, high },
                None => Requested::Plain(name),
            });
        }
        Self { all, requested }
    }

    /// Whether an attribute was asked for by name.
    pub(crate) fn names(&self, attribute: &str) -> bool {
        self.requested.iter().any(|r| match r {
            Requested::Plain(n) | Requested::Range { name: n, .. } => {
                n.eq_ignore_ascii_case(attribute)
            }
        })
    }

    /// Whether an attribute was asked for with a range option (`member;range=1500-*`).
    pub(crate) fn requests_range(&self) -> bool {
        self.requested
            .iter()
            .any(|r| matches!(r, Requested::Range { .. }))
    }

    /// The attributes to send for `entry`.
    pub(crate) fn apply(
        &self,
        entry: &Entry,
        computed_uac: Option<u32>,
        shape: &Shape<'_>,
    ) -> Vec<LdapPartialAttribute> {
        let mut out = Vec::new();
        let mut emitted: HashSet<String> = HashSet::new();
        let entry_norm = if shape.malformed.iter().any(|m| m.dn.is_some()) {
            dn::normalize(entry.dn())
        } else {
            String::new()
        };
        let values_of = |name: &str, stored: &[Vec<u8>]| -> Vec<Vec<u8>> {
            let bad = shape.malformed.iter().find(|m| {
                m.attribute.eq_ignore_ascii_case(name)
                    && m.dn
                        .as_deref()
                        .is_none_or(|d| dn::normalize(d) == entry_norm)
            });
            match bad {
                Some(m) => vec![m.value.clone(); stored.len()],
                None => stored.to_vec(),
            }
        };
        let emit_plain = |out: &mut Vec<LdapPartialAttribute>,
                          emitted: &mut HashSet<String>,
                          name: &str,
                          stored: &[Vec<u8>]| {
            if !emitted.insert(name.to_ascii_lowercase()) {
                return;
            }
            let values = values_of(name, stored);
            let max = shape.max_val_range.max(1);
            if values.len() > max {
                if shape.empty_plain_ranged {
                    out.push(LdapPartialAttribute {
                        atype: name.to_string(),
                        vals: Vec::new(),
                    });
                }
                let high = if shape.absurd_range {
                    u64::MAX.to_string()
                } else {
                    (max - 1).to_string()
                };
                out.push(LdapPartialAttribute {
                    atype: format!("{name};range=0-{high}"),
                    vals: values.into_iter().take(max).collect(),
                });
            } else {
                out.push(LdapPartialAttribute {
                    atype: name.to_string(),
                    vals: values,
                });
            }
        };
        let dn_value = vec![entry.dn().as_bytes().to_vec()];
        if self.all {
            for attr in entry.attributes() {
                emit_plain(&mut out, &mut emitted, &attr.name, &attr.values);
            }
            if !entry.dn().is_empty() {
                emit_plain(&mut out, &mut emitted, "distinguishedName", &dn_value);
            }
        }
        for req in &self.requested {
            match req {
                Requested::Plain(name) => {
                    if name.eq_ignore_ascii_case("distinguishedName") {
                        emit_plain(&mut out, &mut emitted, "distinguishedName", &dn_value);
                    } else if name.eq_ignore_ascii_case(COMPUTED_UAC) {
                        if let Some(v) = computed_uac {
                            emit_plain(
                                &mut out,
                                &mut emitted,
                                COMPUTED_UAC,
                                &[v.to_string().into_bytes()],
                            );
                        }
                    } else if let Some(attr) = entry.attribute(name) {
                        emit_plain(&mut out, &mut emitted, &attr.name, &attr.values);
                    }
                }
                Requested::Range { name, low, high } => {
                    let Some(attr) = entry.attribute(name) else {
                        continue;
                    };
                    let total = attr.values.len();
                    if *low >= total || high.is_some_and(|h| h < *low) {
                        continue;
                    }
                    let max = shape.max_val_range.max(1);
                    let end = high
                        .unwrap_or(usize::MAX)
                        .min(low.saturating_add(max - 1))
                        .min(total - 1);
                    let atype = if end == total - 1 {
                        format!("{};range={low}-*", attr.name)
                    } else {
                        format!("{};range={low}-{end}", attr.name)
                    };
                    if !emitted.insert(atype.to_ascii_lowercase()) {
                        continue;
                    }
                    let values = values_of(&attr.name, &attr.values[*low..=end]);
                    out.push(LdapPartialAttribute {
                        atype,
                        vals: values,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Entry {
        Entry::new("CN=G,DC=x")
            .with("objectClass", ["group"])
            .with("member", (0..n).map(|i| format!("CN=u{i},DC=x")))
    }

    fn shape() -> Shape<'static> {
        Shape {
            max_val_range: 1500,
            empty_plain_ranged: false,
            malformed: &[],
            absurd_range: false,
        }
    }

    fn names(attrs: &[LdapPartialAttribute]) -> Vec<String> {
        attrs.iter().map(|a| a.atype.clone()).collect()
    }

    #[test]
    fn small_values_are_plain() {
        let p = Projection::parse(&["member".into()]);
        let out = p.apply(&group(3), None, &shape());
        assert_eq!(names(&out), vec!["member"]);
        assert_eq!(out[0].vals.len(), 3);
    }

    #[test]
    fn large_values_are_ranged() {
        let g = group(4000);
        let out = Projection::parse(&["member".into()]).apply(&g, None, &shape());
        assert_eq!(names(&out), vec!["member;range=0-1499"]);
        assert_eq!(out[0].vals.len(), 1500);
        let out = Projection::parse(&["member;range=1500-*".into()]).apply(&g, None, &shape());
        assert_eq!(names(&out), vec!["member;range=1500-2999"]);
        let out = Projection::parse(&["member;range=3000-*".into()]).apply(&g, None, &shape());
        assert_eq!(names(&out), vec!["member;range=3000-*"]);
        assert_eq!(out[0].vals.len(), 1000);
        let out = Projection::parse(&["member;range=10-19".into()]).apply(&g, None, &shape());
        assert_eq!(names(&out), vec!["member;range=10-19"]);
        assert_eq!(out[0].vals[0], b"CN=u10,DC=x".to_vec());
        let out = Projection::parse(&["member;range=3990-5000".into()]).apply(&g, None, &shape());
        assert_eq!(names(&out), vec!["member;range=3990-*"]);
        let out = Projection::parse(&["member;range=4000-*".into()]).apply(&g, None, &shape());
        assert!(out.is_empty());
        let with_empty = Shape {
            empty_plain_ranged: true,
            ..shape()
        };
        let out = Projection::parse(&[]).apply(&g, None, &with_empty);
        assert_eq!(
            names(&out),
            vec![
                "objectClass",
                "member",
                "member;range=0-1499",
                "distinguishedName"
            ]
        );
    }

    #[test]
    fn star_one_one_and_constructed() {
        let e = Entry::new("CN=u,DC=x")
            .with("objectClass", ["user"])
            .with("cn", ["u"]);
        let all = Projection::parse(&["*".into()]).apply(&e, Some(16), &shape());
        assert_eq!(names(&all), vec!["objectClass", "cn", "distinguishedName"]);
        let none = Projection::parse(&["1.1".into()]).apply(&e, Some(16), &shape());
        assert!(none.is_empty());
        let p = Projection::parse(&["CN".into(), COMPUTED_UAC.to_lowercase()]);
        let out = p.apply(&e, Some(16), &shape());
        assert_eq!(names(&out), vec!["cn", COMPUTED_UAC]);
        assert_eq!(out[1].vals, vec![b"16".to_vec()]);
        assert!(p.names("msds-user-account-control-computed"));
    }

    #[test]
    fn malformed_values_replace_stored_ones() {
        let e = Entry::new("CN=u,DC=x")
            .with("objectSid", [vec![1u8, 1, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0]])
            .with("cn", ["u"]);
        let bad = [Malformation::truncated_sid().for_dn("cn=U,dc=x")];
        let s = Shape {
            malformed: &bad,
            ..shape()
        };
        let out = Projection::parse(&[]).apply(&e, None, &s);
        assert_eq!(out[0].vals[0].len(), 7);
        let other = Entry::new("CN=v,DC=x").with("objectSid", [vec![1u8; 12]]);
        let out = Projection::parse(&[]).apply(&other, None, &s);
        assert_eq!(out[0].vals[0].len(), 12);
    }
}
