//! One directory entry: a DN and its attributes.

/// One attribute: its name as first written (case kept for output) and its raw values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name, in the case it was first written (`userAccountControl`).
    pub name: String,
    /// The values as bytes (text attributes are UTF-8).
    pub values: Vec<Vec<u8>>,
}

/// A directory entry. Attribute names compare case-insensitively; values are raw bytes.
///
/// `distinguishedName` is not stored: the server synthesizes it from [`Entry::dn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    dn: String,
    attributes: Vec<Attribute>,
}

impl Entry {
    /// An entry with no attributes.
    pub fn new(dn: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            attributes: Vec::new(),
        }
    }

    /// Builder form of [`Entry::set`].
    #[must_use]
    pub fn with<V: Into<Vec<u8>>>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.set(name, values);
        self
    }

    /// An entry from attributes known to have distinct names (no duplicate check).
    pub(crate) fn from_attributes(dn: String, attributes: Vec<Attribute>) -> Self {
        Self { dn, attributes }
    }

    /// The DN as stored (original case and escaping).
    pub fn dn(&self) -> &str {
        &self.dn
    }

    pub(crate) fn set_dn(&mut self, dn: String) {
        self.dn = dn;
    }

    /// All stored attributes, in insertion order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// The values of an attribute (case-insensitive name); `None` when absent.
    /// `distinguishedName` is not stored and returns `None` here.
    pub fn get(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attribute(name).map(|a| a.values.as_slice())
    }

    /// The attribute record (name as stored and values).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn attribute_mut(&mut self, name: &str) -> Option<&mut Attribute> {
        self.attributes
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The first value as text (lossy UTF-8).
    pub fn first_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|v| v.first())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// All values as text (lossy UTF-8); empty when absent.
    pub fn strs(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or_default()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The first value parsed as a decimal integer.
    pub fn first_i64(&self, name: &str) -> Option<i64> {
        self.first_str(name).and_then(|s| s.trim().parse().ok())
    }

    /// Replaces an attribute's values (keeps the stored name's case if present).
    /// An empty value list removes the attribute.
    pub fn set<V: Into<Vec<u8>>>(&mut self, name: &str, values: impl IntoIterator<Item = V>) {
        let values: Vec<Vec<u8>> = values.into_iter().map(Into::into).collect();
        if values.is_empty() {
            self.remove(name);
            return;
        }
        match self.attribute_mut(name) {
            Some(attr) => attr.values = values,
            None => self.attributes.push(Attribute {
                name: name.to_string(),
                values,
            }),
        }
    }

    /// Sets the attribute only when it is absent.
    pub(crate) fn set_default<V: Into<Vec<u8>>>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) {
        if self.get(name).is_none() {
            self.set(name, values);
        }
    }

    /// Appends one value (no duplicate check).
    pub(crate) fn push_value(&mut self, name: &str, value: Vec<u8>) {
        match self.attribute_mut(name) {
            Some(attr) => attr.values.push(value),
            None => self.attributes.push(Attribute {
                name: name.to_string(),
                values: vec![value],
            }),
        }
    }

    /// Removes values for which `remove` is true; drops the attribute when it becomes empty.
    pub(crate) fn retain_values(&mut self, name: &str, mut keep: impl FnMut(&[u8]) -> bool) {
        if let Some(attr) = self.attribute_mut(name) {
            attr.values.retain(|v| keep(v));
            if attr.values.is_empty() {
                self.remove(name);
            }
        }
    }

    /// Removes an attribute, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<Vec<Vec<u8>>> {
        let pos = self
            .attributes
            .iter()
            .position(|a| a.name.eq_ignore_ascii_case(name))?;
        Some(self.attributes.remove(pos).values)
    }

    /// Whether the attribute holds this exact value (bytes compare).
    pub fn has_value(&self, name: &str, value: &[u8]) -> bool {
        self.get(name)
            .is_some_and(|vals| vals.iter().any(|v| v.as_slice() == value))
    }

    /// Whether `objectClass` contains `class` (case-insensitive).
    pub fn is_class(&self, class: &str) -> bool {
        self.get("objectClass").is_some_and(|vals| {
            vals.iter()
                .any(|v| v.eq_ignore_ascii_case(class.as_bytes()))
        })
    }

    /// Whether the entry is a tombstone (`isDeleted: TRUE`).
    pub fn is_deleted(&self) -> bool {
        self.get("isDeleted")
            .and_then(|v| v.first())
            .is_some_and(|v| v.eq_ignore_ascii_case(b"TRUE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_keep_case() {
        let mut e = Entry::new("CN=x").with("userAccountControl", ["512"]);
        assert_eq!(e.first_i64("USERACCOUNTCONTROL"), Some(512));
        e.set("useraccountcontrol", ["514"]);
        assert_eq!(e.attributes()[0].name, "userAccountControl");
        assert_eq!(e.first_str("userAccountControl").unwrap(), "514");
        e.set("userAccountControl", Vec::<Vec<u8>>::new());
        assert!(e.get("userAccountControl").is_none());
    }
}
