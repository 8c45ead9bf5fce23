//! The library-agnostic raw entry every decoder starts from, and per-entry warnings.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::guid::Guid;
use crate::sid::Sid;
use crate::time::{PwdLastSet, decode_filetime, decode_generalized_time, decode_pwd_last_set};

/// One directory entry as any LDAP library returns it: a DN and attribute values as bytes.
///
/// Attribute names are case-insensitive (RFC 4512): `objectGUID` and `objectguid` are the
/// same key. Values are raw octets; text attributes are UTF-8 (RFC 4517).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawEntry {
    dn: String,
    /// (lowercase name, values), sorted by name: a few dozen attributes per entry, looked up
    /// by binary search (no tree of nodes per entry).
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    /// An entry with no attributes.
    pub fn new(dn: impl Into<String>) -> Self {
        RawEntry {
            dn: dn.into(),
            attrs: Vec::new(),
        }
    }

    /// An entry with room for `attributes` attributes.
    pub fn with_capacity(dn: impl Into<String>, attributes: usize) -> Self {
        RawEntry {
            dn: dn.into(),
            attrs: Vec::with_capacity(attributes),
        }
    }

    /// Build from the two maps LDAP libraries such as `ldap3` hand out: values that were
    /// valid UTF-8 in `text`, the others in `binary`. Values of the same attribute in both
    /// maps are merged (a binary SID or GUID can be valid UTF-8 by chance).
    pub fn from_maps<T, B>(dn: impl Into<String>, text: T, binary: B) -> Self
    where
        T: IntoIterator<Item = (String, Vec<String>)>,
        B: IntoIterator<Item = (String, Vec<Vec<u8>>)>,
    {
        let mut entry = RawEntry::new(dn);
        for (name, values) in text {
            for value in values {
                entry.push(&name, value.into_bytes());
            }
        }
        for (name, values) in binary {
            for value in values {
                entry.push(&name, value);
            }
        }
        entry
    }

    /// Where the attribute `name` (any case) is, or where it would go. Compares the
    /// stored lowercase names with `name` lowercased byte by byte: no copy of `name`, and
    /// no call into `memcmp` for names that differ early (this runs ~100 times per entry).
    fn find(&self, name: &str) -> Result<usize, usize> {
        let name = name.as_bytes();
        self.attrs.binary_search_by(|(stored, _)| {
            let stored = stored.as_bytes();
            for (a, b) in stored.iter().zip(name) {
                match a.cmp(&b.to_ascii_lowercase()) {
                    std::cmp::Ordering::Equal => {}
                    other => return other,
                }
            }
            stored.len().cmp(&name.len())
        })
    }

    /// Append one value to an attribute.
    pub fn push(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        match self.find(name) {
            Ok(i) => {
                if let Some((_, values)) = self.attrs.get_mut(i) {
                    values.push(value.into());
                }
            }
            Err(i) => self
                .attrs
                .insert(i, (name.to_ascii_lowercase(), vec![value.into()])),
        }
    }

    /// Append values to an attribute whose name the caller owns (no copy of the name).
    pub fn append(&mut self, mut name: String, mut values: Vec<Vec<u8>>) {
        name.make_ascii_lowercase();
        match self.find(&name) {
            Ok(i) => {
                if let Some((_, existing)) = self.attrs.get_mut(i) {
                    existing.append(&mut values);
                }
            }
            Err(i) => self.attrs.insert(i, (name, values)),
        }
    }

    /// Builder form of [`push`](Self::push) for several values.
    pub fn with<I, V>(mut self, name: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Vec<u8>>,
    {
        for value in values {
            self.push(name, value);
        }
        self
    }

    /// Replace all values of an attribute.
    pub fn set(&mut self, name: &str, values: Vec<Vec<u8>>) {
        match self.find(name) {
            Ok(i) => {
                if let Some((_, existing)) = self.attrs.get_mut(i) {
                    *existing = values;
                }
            }
            Err(i) => self.attrs.insert(i, (name.to_ascii_lowercase(), values)),
        }
    }

    /// Remove an attribute, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<Vec<Vec<u8>>> {
        let i = self.find(name).ok()?;
        Some(self.attrs.remove(i).1)
    }

    /// The entry's DN.
    pub fn dn(&self) -> &str {
        &self.dn
    }

    /// All values of an attribute (empty if absent). The name is matched case-insensitively.
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        match self.find(name) {
            Ok(i) => self.attrs.get(i).map_or(&[], |(_, v)| v.as_slice()),
            Err(_) => &[],
        }
    }

    /// The first value of an attribute.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.values(name).first().map(Vec::as_slice)
    }

    /// Attribute names present (lowercase, in order).
    pub fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.attrs.iter().map(|(k, _)| k.as_str())
    }

    /// Attributes as (lowercase name, values), in name order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &[Vec<u8>])> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

impl fmt::Debug for RawEntry {
    /// Shows names and value shapes, never values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"dn", &self.dn);
        for (name, values) in &self.attrs {
            map.entry(name, &values_shape(values));
        }
        map.finish()
    }
}

/// A problem with one optional attribute. The field is left empty; the rest of the entry
/// is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeWarning {
    /// The attribute as AD names it (`pwdLastSet`).
    pub attribute: String,
    /// What was wrong, as a sentence.
    pub problem: String,
    /// The raw value's shape (`binary, 7 bytes`), never the value itself.
    pub shape: String,
}

impl fmt::Display for DecodeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attribute {} ignored: {} (value was {})",
            self.attribute, self.problem, self.shape
        )
    }
}

/// A decoded record together with the warnings its entry produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// The record.
    pub record: T,
    /// One per attribute that could not be decoded.
    pub warnings: Vec<DecodeWarning>,
}

/// The shape of a value for messages: kind and size, never content.
pub fn value_shape(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text_shape(text),
        Err(_) => format!("binary, {} bytes", value.len()),
    }
}

/// The shape of a text for messages.
pub fn text_shape(text: &str) -> String {
    let chars = text.chars().count();
    if text.is_empty() {
        "empty text".to_owned()
    } else if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("text of {chars} digits")
    } else {
        format!("text, {chars} characters")
    }
}

fn values_shape(values: &[Vec<u8>]) -> String {
    match values {
        [one] => value_shape(one),
        many => format!("{} values", many.len()),
    }
}

/// Reads attributes off an entry, collecting a warning for each one that does not decode.
pub(crate) struct FieldReader<'a> {
    entry: &'a RawEntry,
    pub(crate) warnings: Vec<DecodeWarning>,
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(entry: &'a RawEntry) -> Self {
        FieldReader {
            entry,
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, attribute: &str, problem: impl fmt::Display, shape: String) {
        self.warnings.push(DecodeWarning {
            attribute: attribute.to_owned(),
            problem: problem.to_string(),
            shape,
        });
    }

    /// The single value of a single-valued attribute, decoded by `decode`.
    pub(crate) fn one<T, E: fmt::Display>(
        &mut self,
        attribute: &str,
        decode: impl Fn(&[u8]) -> Result<T, E>,
    ) -> Option<T> {
        let values = self.entry.values(attribute);
        let first = values.first()?;
        if values.len() > 1 {
            self.warn(
                attribute,
                format!(
                    "a single-valued attribute came with {} values; the first was used",
                    values.len()
                ),
                values_shape(values),
            );
        }
        match decode(first) {
            Ok(value) => Some(value),
            Err(error) => {
                self.warn(attribute, error, value_shape(first));
                None
            }
        }
    }

    /// Every value of a multi-valued attribute that decodes; a warning for each that does not.
    pub(crate) fn all<T, E: fmt::Display>(
        &mut self,
        attribute: &str,
        decode: impl Fn(&[u8]) -> Result<T, E>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(self.entry.values(attribute).len());
        for value in self.entry.values(attribute) {
            match decode(value) {
                Ok(decoded) => out.push(decoded),
                Err(error) => self.warn(attribute, error, value_shape(value)),
            }
        }
        out
    }

    pub(crate) fn text(&mut self, attribute: &str) -> Option<String> {
        self.one(attribute, utf8_owned).filter(|s| !s.is_empty())
    }

    pub(crate) fn texts(&mut self, attribute: &str) -> Vec<String> {
        self.all(attribute, utf8_owned)
    }

    pub(crate) fn number<T: std::str::FromStr>(&mut self, attribute: &str) -> Option<T> {
        self.one(attribute, |bytes| {
            let text = utf8(bytes)?;
            text.parse::<T>()
                .map_err(|_| format!("expected a non-negative integer, got {}", text_shape(text)))
        })
    }

    pub(crate) fn filetime(&mut self, attribute: &str) -> Option<DateTime<Utc>> {
        self.one(attribute, |bytes| {
            decode_filetime(utf8(bytes)?).map_err(|e| e.to_string())
        })
        .flatten()
    }

    pub(crate) fn pwd_last_set(&mut self, attribute: &str) -> Option<PwdLastSet> {
        self.one(attribute, |bytes| {
            decode_pwd_last_set(utf8(bytes)?).map_err(|e| e.to_string())
        })
    }

    pub(crate) fn generalized_time(&mut self, attribute: &str) -> Option<DateTime<Utc>> {
        self.one(attribute, |bytes| {
            decode_generalized_time(utf8(bytes)?).map_err(|e| e.to_string())
        })
        .flatten()
    }

    pub(crate) fn sid(&mut self, attribute: &str) -> Option<Sid> {
        self.one(attribute, Sid::from_bytes)
    }

    pub(crate) fn sids(&mut self, attribute: &str) -> Vec<Sid> {
        self.all(attribute, Sid::from_bytes)
    }

    pub(crate) fn parsed<T, E: fmt::Display>(
        &mut self,
        attribute: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        self.one(attribute, |bytes| {
            parse(utf8(bytes)?).map_err(|e| e.to_string())
        })
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes)
        .map_err(|_| "expected UTF-8 text, got bytes that are not valid UTF-8".to_owned())
}

fn utf8_owned(bytes: &[u8]) -> Result<String, String> {
    utf8(bytes).map(str::to_owned)
}

/// Why an entry could not become a record at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// No `objectGUID`: the entry cannot be tracked across renames and syncs.
    #[error(
        "entry {dn} has no objectGUID, so it cannot be tracked; request the objectGUID attribute and check the account may read it (\"Read all user information\")"
    )]
    MissingObjectGuid {
        /// The entry's DN.
        dn: String,
    },
    /// An `objectGUID` that is not 16 bytes.
    #[error("entry {dn} has an objectGUID that is not a GUID ({problem}; value was {shape})")]
    BadObjectGuid {
        /// The entry's DN.
        dn: String,
        /// What was wrong.
        problem: String,
        /// The value's shape.
        shape: String,
    },
}

/// Read the mandatory objectGUID.
pub(crate) fn object_guid(entry: &RawEntry) -> Result<Guid, EntryError> {
    let value = entry
        .first("objectGUID")
        .ok_or_else(|| EntryError::MissingObjectGuid {
            dn: entry.dn().to_owned(),
        })?;
    Guid::from_bytes(value).map_err(|error| EntryError::BadObjectGuid {
        dn: entry.dn().to_owned(),
        problem: error.to_string(),
        shape: value_shape(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        let mut entry = RawEntry::new("CN=x");
        entry.push("objectGUID", vec![1u8; 16]);
        entry.push("OBJECTguid", vec![2u8; 16]);
        assert_eq!(entry.values("objectguid").len(), 2);
        assert_eq!(entry.values("ObjectGuid").len(), 2);
        assert_eq!(entry.first("objectGUID"), Some(&[1u8; 16][..]));
    }

    #[test]
    fn attributes_stay_in_name_order_whatever_the_arrival() {
        let mut entry = RawEntry::with_capacity("CN=x", 4);
        entry.append("sn".to_owned(), vec![b"S".to_vec()]);
        entry.push("CN", "x");
        entry.append("memberOf".to_owned(), vec![b"g1".to_vec()]);
        entry.append("MEMBEROF".to_owned(), vec![b"g2".to_vec()]);
        entry.set("Mail", vec![b"m".to_vec()]);
        assert_eq!(
            entry.attribute_names().collect::<Vec<_>>(),
            ["cn", "mail", "memberof", "sn"]
        );
        assert_eq!(entry.values("memberOf"), [b"g1".to_vec(), b"g2".to_vec()]);
        assert_eq!(entry.remove("SN"), Some(vec![b"S".to_vec()]));
        assert_eq!(entry.remove("sn"), None);
        assert!(entry.values("sn").is_empty());
        let long = "x".repeat(100);
        entry.push(&long, "v");
        assert_eq!(entry.first(&long.to_uppercase()), Some(&b"v"[..]));
    }

    #[test]
    fn maps_merge_text_and_binary() {
        let entry = RawEntry::from_maps(
            "CN=x",
            [("cn".to_owned(), vec!["x".to_owned()])],
            [("objectSid".to_owned(), vec![vec![0xffu8, 0xfe]])],
        );
        assert_eq!(entry.first("cn"), Some(&b"x"[..]));
        assert_eq!(entry.first("objectsid"), Some(&[0xffu8, 0xfe][..]));
    }

    #[test]
    fn debug_shows_shapes_not_values() {
        let entry = RawEntry::new("CN=x").with("description", ["s3cr3t-looking text"]);
        let debug = format!("{entry:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("text, 19 characters"), "{debug}");
    }
}
