//! Panic-free readers for the BER that comes off the wire: search result entries (from
//! ldap3's already-framed tags) and the paged-results response control.
//!
//! ldap3's own `SearchEntry::construct` and control parsers `expect()` on malformed input;
//! a DC, a proxy or a test server sending something odd must cost one entry, not the process.

use ad_model::{Guid, RawEntry};
use ldap3::asn1::{PL, StructureTag};

/// Read a BER TLV: (tag byte, contents, rest).
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The cookie of a paged-results response control value
/// (`SEQUENCE { size INTEGER, cookie OCTET STRING }`), or `None` if malformed.
pub(crate) fn paged_cookie(value: &[u8]) -> Option<Vec<u8>> {
    let (tag, seq, _) = read_tlv(value)?;
    if tag != 0x30 {
        return None;
    }
    let (int_tag, _, rest) = read_tlv(seq)?;
    if int_tag != 0x02 {
        return None;
    }
    let (cookie_tag, cookie, _) = read_tlv(rest)?;
    if cookie_tag != 0x04 {
        return None;
    }
    Some(cookie.to_vec())
}

fn primitive(tag: StructureTag) -> Option<Vec<u8>> {
    match tag.payload {
        PL::P(bytes) => Some(bytes),
        PL::C(_) => None,
    }
}

fn constructed(tag: StructureTag) -> Option<Vec<StructureTag>> {
    match tag.payload {
        PL::C(children) => Some(children),
        PL::P(_) => None,
    }
}

/// Why an entry could not be read; `dn` and `guid` are whatever could be recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedEntry {
    pub(crate) dn: String,
    /// The entry's `objectGUID`, when it was itself well-formed.
    pub(crate) guid: Option<Guid>,
    pub(crate) reason: String,
}

/// The `objectGUID` among attribute tags (`SEQUENCE { type, SET OF value }`), if one is
/// well-formed, without consuming them.
fn guid_among(attrs: &[StructureTag]) -> Option<Guid> {
    attrs.iter().find_map(|attr| {
        let PL::C(pieces) = &attr.payload else {
            return None;
        };
        let PL::P(name) = &pieces.first()?.payload else {
            return None;
        };
        if !name.eq_ignore_ascii_case(b"objectGUID") {
            return None;
        }
        let PL::C(values) = &pieces.get(1)?.payload else {
            return None;
        };
        match &values.first()?.payload {
            PL::P(value) => Guid::from_bytes(value).ok(),
            PL::C(_) => None,
        }
    })
}

/// The attribute tags of a not-yet-consumed attribute list tag.
fn attribute_tags(tag: Option<&StructureTag>) -> &[StructureTag] {
    match tag.map(|t| &t.payload) {
        Some(PL::C(attrs)) => attrs,
        _ => &[],
    }
}

/// Turn a SearchResultEntry tag (`[APPLICATION 4] SEQUENCE { objectName, attributes }`)
/// into a [`RawEntry`] without copying values.
pub(crate) fn entry_from_tag(tag: StructureTag) -> Result<RawEntry, MalformedEntry> {
    let bad = |dn: &str, guid: Option<Guid>, reason: &str| MalformedEntry {
        dn: dn.to_owned(),
        guid,
        reason: reason.to_owned(),
    };
    if tag.id != 4 {
        return Err(bad(
            "",
            None,
            "the server sent a search result that is not an entry",
        ));
    }
    let mut parts = constructed(tag)
        .ok_or_else(|| bad("", None, "the entry is not a BER sequence"))?
        .into_iter();
    let dn_bytes = parts
        .next()
        .and_then(primitive)
        .ok_or_else(|| bad("", None, "the entry has no DN"))?;
    let dn = match String::from_utf8(dn_bytes) {
        Ok(dn) => dn,
        Err(e) => {
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let guid = guid_among(attribute_tags(parts.as_slice().first()));
            return Err(bad(&lossy, guid, "the entry's DN is not valid UTF-8"));
        }
    };
    let attrs = parts
        .next()
        .and_then(constructed)
        .ok_or_else(|| bad(&dn, None, "the entry's attribute list is malformed"))?;
    let mut entry = RawEntry::with_capacity(dn, attrs.len());
    let mut attrs = attrs.into_iter();
    while let Some(attr) = attrs.next() {
        // On failure: the GUID if it was read already or is among the attributes left.
        let guid = |entry: &RawEntry, rest: &[StructureTag]| {
            entry
                .first("objectGUID")
                .and_then(|v| Guid::from_bytes(v).ok())
                .or_else(|| guid_among(rest))
        };
        let mut pieces = match constructed(attr) {
            Some(p) => p.into_iter(),
            None => {
                return Err(bad(
                    entry.dn(),
                    guid(&entry, attrs.as_slice()),
                    "an attribute is not a BER sequence",
                ));
            }
        };
        let Some(name) = pieces
            .next()
            .and_then(primitive)
            .and_then(|n| String::from_utf8(n).ok())
        else {
            return Err(bad(
                entry.dn(),
                guid(&entry, attrs.as_slice()),
                "an attribute name is missing or not UTF-8",
            ));
        };
        let Some(values) = pieces.next().and_then(constructed) else {
            return Err(bad(
                entry.dn(),
                guid(&entry, attrs.as_slice()),
                &format!("attribute {name} has no value set"),
            ));
        };
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            match primitive(value) {
                Some(v) => out.push(v),
                None => {
                    return Err(bad(
                        entry.dn(),
                        guid(&entry, attrs.as_slice()),
                        &format!("a value of attribute {name} is not an octet string"),
                    ));
                }
            }
        }
        // Same attribute twice (should not happen): every value is kept.
        entry.append(name, out);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn p(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }
    fn c(id: u64, class: TagClass, children: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(children),
        }
    }

    #[test]
    fn reads_paged_cookies() {
        assert_eq!(
            paged_cookie(&[0x30, 0x05, 0x02, 0x01, 0x00, 0x04, 0x00]),
            Some(vec![])
        );
        assert_eq!(
            paged_cookie(&[0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, 0xab, 0xcd]),
            Some(vec![0xab, 0xcd])
        );
        // Long-form length.
        let mut long = vec![0x30, 0x81, 0x86, 0x02, 0x01, 0x00, 0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(paged_cookie(&long).map(|c| c.len()), Some(0x80));
        // Garbage never panics.
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x09, 0x02],
            &[0x04, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(paged_cookie(bad), None);
        }
    }

    #[test]
    fn reads_entries_and_reports_malformed_ones() {
        let attr = |name: &str, values: &[&[u8]]| {
            c(
                16,
                TagClass::Universal,
                vec![
                    p(name.as_bytes()),
                    c(
                        17,
                        TagClass::Universal,
                        values.iter().map(|v| p(v)).collect(),
                    ),
                ],
            )
        };
        let entry = c(
            4,
            TagClass::Application,
            vec![
                p(b"CN=a,DC=x"),
                c(
                    16,
                    TagClass::Universal,
                    vec![attr("objectGUID", &[&[0xff; 16]]), attr("cn", &[b"a"])],
                ),
            ],
        );
        let raw = entry_from_tag(entry).unwrap();
        assert_eq!(raw.dn(), "CN=a,DC=x");
        assert_eq!(raw.first("objectguid"), Some(&[0xff; 16][..]));
        assert_eq!(raw.first("CN"), Some(&b"a"[..]));

        let bad_dn = c(
            4,
            TagClass::Application,
            vec![p(&[0xff, 0xfe]), c(16, TagClass::Universal, vec![])],
        );
        assert!(entry_from_tag(bad_dn).unwrap_err().reason.contains("UTF-8"));
        let no_attrs = c(4, TagClass::Application, vec![p(b"CN=b")]);
        assert_eq!(entry_from_tag(no_attrs).unwrap_err().dn, "CN=b");
        let bad_value = c(
            4,
            TagClass::Application,
            vec![
                p(b"CN=c"),
                c(
                    16,
                    TagClass::Universal,
                    vec![c(16, TagClass::Universal, vec![p(b"cn"), p(b"x")])],
                ),
            ],
        );
        assert!(entry_from_tag(bad_value).unwrap_err().reason.contains("cn"));

        // The GUID is recovered when it is itself well-formed, before or after the bad part.
        let guid = [0x11u8; 16];
        let bad_attr = || c(16, TagClass::Universal, vec![p(b"cn"), p(b"x")]);
        for attrs in [
            vec![attr("objectGUID", &[&guid]), bad_attr()],
            vec![bad_attr(), attr("objectGUID", &[&guid])],
        ] {
            let err = entry_from_tag(c(
                4,
                TagClass::Application,
                vec![p(b"CN=d"), c(16, TagClass::Universal, attrs)],
            ))
            .unwrap_err();
            assert_eq!(err.dn, "CN=d");
            assert_eq!(err.guid, Some(Guid::from_bytes(&guid).unwrap()));
        }
        let bad_dn_with_guid = c(
            4,
            TagClass::Application,
            vec![
                p(&[0xff]),
                c(16, TagClass::Universal, vec![attr("objectGUID", &[&guid])]),
            ],
        );
        assert!(entry_from_tag(bad_dn_with_guid).unwrap_err().guid.is_some());
        let short_guid = c(
            4,
            TagClass::Application,
            vec![
                p(b"CN=e"),
                c(
                    16,
                    TagClass::Universal,
                    vec![attr("objectGUID", &[&[1u8; 15]]), bad_attr()],
                ),
            ],
        );
        assert_eq!(entry_from_tag(short_guid).unwrap_err().guid, None);
    }
}
