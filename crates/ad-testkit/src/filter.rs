//! LDAP filter evaluation with Active Directory's matching behaviour, plus an RFC 4515 string
//! parser and renderer.
//!
//! Filters use ldap3_proto's [`LdapFilter`] (what the server receives on the wire). Evaluation is
//! three-valued (RFC 4511 §4.5.1.7): an unknown matching rule is *Undefined*, and `!` of
//! Undefined stays Undefined, so `(!(x:9.9:=1))` matches nothing, as on a real server.
//!
//! AD specifics implemented here:
//! - string equality, ordering and substrings are case-insensitive;
//! - `>=` / `<=` compare numerically when both sides are integers (`uSNChanged>=12345`);
//! - DN-valued attributes (`member`, `memberOf`, `manager`, `objectCategory`, ...) compare as DNs;
//! - `objectCategory=person` matches `CN=Person,CN=Schema,...` (the value's first RDN), and
//!   `objectCategory=user` is read as `person` like AD does;
//! - extensible matches `1.2.840.113556.1.4.803` (bitwise AND) and `.804` (bitwise OR) on 32-bit
//!   bit patterns (so a negative `groupType` works), and `.1941` (LDAP_MATCHING_RULE_IN_CHAIN,
//!   transitive `memberOf` / `member`) when the evaluation has a directory to follow links in.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use ldap3_proto::LdapFilter;
use ldap3_proto::proto::{LdapMatchingRuleAssertion, LdapSubstringFilter};

use crate::dn;
use crate::entry::Entry;
use crate::error::{Result, TestkitError};

/// Bitwise AND matching rule (`LDAP_MATCHING_RULE_BIT_AND`).
pub const RULE_BIT_AND: &str = "1.2.840.113556.1.4.803";
/// Bitwise OR matching rule (`LDAP_MATCHING_RULE_BIT_OR`).
pub const RULE_BIT_OR: &str = "1.2.840.113556.1.4.804";
/// Transitive link matching rule (`LDAP_MATCHING_RULE_IN_CHAIN`).
pub const RULE_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// Attributes whose values are DNs (compared as DNs in filters).
const DN_ATTRIBUTES: &[&str] = &[
    "distinguishedName",
    "member",
    "memberOf",
    "manager",
    "directReports",
    "objectCategory",
    "lastKnownParent",
    "managedBy",
    "defaultObjectCategory",
];

/// Three-valued filter result (RFC 4511).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    Undefined,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b { Tri::True } else { Tri::False }
    }
}

/// Looks up attribute values of other entries, for rules that follow links (`.1941`).
pub(crate) trait Resolver {
    /// The values of `attr` on the live entry named `dn`; `None` when there is no such entry.
    fn values_of(&self, dn: &str, attr: &str) -> Option<Vec<Vec<u8>>>;
}

/// A resolver that knows no other entries: `.1941` then only sees direct values.
struct NoResolver;

impl Resolver for NoResolver {
    fn values_of(&self, _dn: &str, _attr: &str) -> Option<Vec<Vec<u8>>> {
        None
    }
}

/// Whether `entry` matches `filter` (Undefined counts as no match). The in-chain rule sees
/// direct values only; searches through [`crate::Directory`] or the server follow links.
pub fn matches(filter: &LdapFilter, entry: &Entry) -> bool {
    evaluate_alone(filter, entry) == Tri::True
}

/// Three-valued evaluation of `entry` alone (links to other entries are not followed).
pub(crate) fn evaluate_alone(filter: &LdapFilter, entry: &Entry) -> Tri {
    evaluate(filter, entry, &NoResolver)
}

/// Full three-valued evaluation.
pub(crate) fn evaluate(filter: &LdapFilter, entry: &Entry, resolver: &dyn Resolver) -> Tri {
    match filter {
        LdapFilter::And(items) => {
            let mut result = Tri::True;
            for item in items {
                match evaluate(item, entry, resolver) {
                    Tri::False => return Tri::False,
                    Tri::Undefined => result = Tri::Undefined,
                    Tri::True => {}
                }
            }
            result
        }
        LdapFilter::Or(items) => {
            let mut result = Tri::False;
            for item in items {
                match evaluate(item, entry, resolver) {
                    Tri::True => return Tri::True,
                    Tri::Undefined => result = Tri::Undefined,
                    Tri::False => {}
                }
            }
            result
        }
        LdapFilter::Not(inner) => match evaluate(inner, entry, resolver) {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Undefined => Tri::Undefined,
        },
        LdapFilter::Present(attr) => {
            if attr.eq_ignore_ascii_case("distinguishedName") {
                return Tri::True;
            }
            values(entry, attr).iter().any(|_| true).into()
        }
        LdapFilter::Equality(attr, assertion) | LdapFilter::Approx(attr, assertion) => {
            values(entry, attr)
                .iter()
                .any(|v| value_equals(attr, v, assertion))
                .into()
        }
        LdapFilter::GreaterOrEqual(attr, assertion) => values(entry, attr)
            .iter()
            .any(|v| compare(v, assertion) != Ordering::Less)
            .into(),
        LdapFilter::LessOrEqual(attr, assertion) => values(entry, attr)
            .iter()
            .any(|v| compare(v, assertion) != Ordering::Greater)
            .into(),
        LdapFilter::Substring(attr, sub) => values(entry, attr)
            .iter()
            .any(|v| substring_matches(v, sub))
            .into(),
        LdapFilter::Extensible(assertion) => extensible(assertion, entry, resolver),
    }
}

/// The values an assertion sees: stored values, plus the synthesized `distinguishedName`.
fn values<'a>(entry: &'a Entry, attr: &str) -> Cow<'a, [Vec<u8>]> {
    if attr.eq_ignore_ascii_case("distinguishedName") {
        return Cow::Owned(vec![entry.dn().as_bytes().to_vec()]);
    }
    Cow::Borrowed(entry.get(attr).unwrap_or_default())
}

fn is_dn_attribute(attr: &str) -> bool {
    DN_ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(attr))
}

fn caseless_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn value_equals(attr: &str, stored: &[u8], assertion: &str) -> bool {
    if stored == assertion.as_bytes() {
        return true;
    }
    let Ok(text) = std::str::from_utf8(stored) else {
        return false;
    };
    if attr.eq_ignore_ascii_case("objectCategory") && !assertion.contains('=') {
        let wanted = if assertion.eq_ignore_ascii_case("user") {
            "person"
        } else {
            assertion
        };
        return first_rdn_value(text).is_some_and(|f| caseless_eq(&f, wanted))
            || caseless_eq(text, wanted);
    }
    if is_dn_attribute(attr) {
        return dn::normalize(text) == dn::normalize(assertion);
    }
    if let (Some(a), Some(b)) = (parse_int(text), parse_int(assertion)) {
        return a == b;
    }
    caseless_eq(text, assertion)
}

/// The value of a DN's first RDN (`Person` of `CN=Person,CN=Schema,...`), cheaply.
fn first_rdn_value(dn_text: &str) -> Option<Cow<'_, str>> {
    let (_, rest) = dn_text.split_once('=')?;
    let head = rest.split_once(',').map_or(rest, |(head, _)| head);
    if head.contains('\\') {
        // Escapes present: take the careful path.
        let rdn = dn::parse(dn_text).ok()?.into_iter().next()?;
        return Some(Cow::Owned(rdn.value));
    }
    Some(Cow::Borrowed(head.trim()))
}

fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim();
    if t.is_empty() || t.len() > 39 {
        return None;
    }
    t.parse::<i128>().ok()
}

/// Orders a stored value against an assertion: numerically when both are integers, else as
/// case-folded strings (GeneralizedTime values order correctly this way).
fn compare(stored: &[u8], assertion: &str) -> Ordering {
    let text = String::from_utf8_lossy(stored);
    if let (Some(a), Some(b)) = (parse_int(&text), parse_int(assertion)) {
        return a.cmp(&b);
    }
    text.to_lowercase().cmp(&assertion.to_lowercase())
}

fn substring_matches(stored: &[u8], sub: &LdapSubstringFilter) -> bool {
    let text = String::from_utf8_lossy(stored).to_lowercase();
    let mut rest: &str = &text;
    if let Some(initial) = &sub.initial {
        let initial = initial.to_lowercase();
        match rest.strip_prefix(initial.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for any in &sub.any {
        let any = any.to_lowercase();
        match rest.split_once(any.as_str()) {
            Some((_, after)) => rest = after,
            None => return false,
        }
    }
    if let Some(fin) = &sub.final_ {
        return rest.ends_with(fin.to_lowercase().as_str());
    }
    true
}

/// An integer as its 32-bit pattern (AD integers are signed 32-bit: `-2147483646` is `0x80000002`).
fn bits32(s: &str) -> Option<u32> {
    let v: i64 = s.trim().parse().ok()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(v as u32)
}

fn extensible(a: &LdapMatchingRuleAssertion, entry: &Entry, resolver: &dyn Resolver) -> Tri {
    let Some(attr) = a.type_.as_deref() else {
        // Rule-only assertions over all attributes are not used against AD.
        return Tri::Undefined;
    };
    match a.matching_rule.as_deref() {
        None => values(entry, attr)
            .iter()
            .any(|v| value_equals(attr, v, &a.match_value))
            .into(),
        Some(RULE_BIT_AND) | Some(RULE_BIT_OR) => {
            let Some(mask) = bits32(&a.match_value) else {
                return Tri::Undefined;
            };
            let and = a.matching_rule.as_deref() == Some(RULE_BIT_AND);
            values(entry, attr)
                .iter()
                .filter_map(|v| std::str::from_utf8(v).ok().and_then(bits32))
                .any(|v| if and { v & mask == mask } else { v & mask != 0 })
                .into()
        }
        Some(RULE_IN_CHAIN) => in_chain(attr, &a.match_value, entry, resolver).into(),
        Some(_) => Tri::Undefined,
    }
}

/// The attribute an assertion (a filter that is not AND, OR or NOT) reads, when its answer
/// depends on that attribute of the entry alone; `None` for AND/OR/NOT, for an extensible
/// match that follows links to other entries (in-chain) and for one that names no attribute.
pub(crate) fn assertion_attribute(filter: &LdapFilter) -> Option<&str> {
    match filter {
        LdapFilter::And(_) | LdapFilter::Or(_) | LdapFilter::Not(_) => None,
        LdapFilter::Extensible(a) => match a.matching_rule.as_deref() {
            Some(RULE_IN_CHAIN) => None,
            _ => a.type_.as_deref(),
        },
        LdapFilter::Present(a)
        | LdapFilter::Equality(a, _)
        | LdapFilter::Approx(a, _)
        | LdapFilter::GreaterOrEqual(a, _)
        | LdapFilter::LessOrEqual(a, _)
        | LdapFilter::Substring(a, _) => Some(a),
    }
}

/// Follows `attr` links transitively from `entry`, looking for `target` (a DN).
fn in_chain(attr: &str, target: &str, entry: &Entry, resolver: &dyn Resolver) -> bool {
    let target = dn::normalize(target);
    let mut seen = HashSet::new();
    let mut queue: Vec<String> = values(entry, attr)
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    while let Some(next) = queue.pop() {
        let norm = dn::normalize(&next);
        if norm == target {
            return true;
        }
        if !seen.insert(norm) || seen.len() > 100_000 {
            continue;
        }
        if let Some(vals) = resolver.values_of(&next, attr) {
            queue.extend(vals.iter().map(|v| String::from_utf8_lossy(v).into_owned()));
        }
    }
    false
}

/// Parses an RFC 4515 filter string (`(&(objectClass=user)(memberOf=CN=G\2c1,DC=x))`).
///
/// Unlike `ldap3_proto::parse_ldap_filter_str`, values may contain `=` and `\XX` escapes are
/// decoded. Outer parentheses may be omitted. Assertion values must decode to UTF-8 (the
/// wire type holds strings), so binary `objectGUID=\..` assertions are rejected.
pub fn parse_filter(input: &str) -> Result<LdapFilter> {
    let trimmed = input.trim();
    let owned;
    let text = if trimmed.starts_with('(') {
        trimmed
    } else {
        owned = format!("({trimmed})");
        &owned
    };
    let mut parser = FilterParser {
        text,
        pos: 0,
        original: input,
    };
    let filter = parser.filter(0)?;
    if parser.pos != text.len() {
        return Err(parser.error("trailing characters after the filter"));
    }
    Ok(filter)
}

struct FilterParser<'a> {
    text: &'a str,
    pos: usize,
    original: &'a str,
}

impl FilterParser<'_> {
    fn error(&self, reason: &str) -> TestkitError {
        TestkitError::InvalidFilter {
            filter: self.original.to_string(),
            reason: format!("{reason} (at byte {})", self.pos),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", byte as char)))
        }
    }

    fn filter(&mut self, depth: usize) -> Result<LdapFilter> {
        if depth > 64 {
            return Err(self.error("filter nested too deeply"));
        }
        self.expect(b'(')?;
        let filter = match self.peek() {
            Some(b'&') => {
                self.pos += 1;
                LdapFilter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.pos += 1;
                LdapFilter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.pos += 1;
                LdapFilter::Not(Box::new(self.filter(depth + 1)?))
            }
            Some(_) => self.item()?,
            None => return Err(self.error("unexpected end")),
        };
        self.expect(b')')?;
        Ok(filter)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<LdapFilter>> {
        let mut items = Vec::new();
        while self.peek() == Some(b'(') {
            items.push(self.filter(depth + 1)?);
        }
        Ok(items)
    }

    fn item(&mut self) -> Result<LdapFilter> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let Some((item, _)) = rest.split_once(')') else {
            return Err(self.error("unterminated item"));
        };
        let end = item.len();
        let Some((head, raw)) = item.split_once('=') else {
            return Err(self.error("item has no '='"));
        };
        let (left, kind) = if let Some(left) = head.strip_suffix('~') {
            (left, ItemKind::Approx)
        } else if let Some(left) = head.strip_suffix('>') {
            (left, ItemKind::Greater)
        } else if let Some(left) = head.strip_suffix('<') {
            (left, ItemKind::Less)
        } else if let Some(left) = head.strip_suffix(':') {
            (left, ItemKind::Extensible)
        } else {
            (head, ItemKind::Equal)
        };
        let filter = match kind {
            ItemKind::Extensible => self.extensible(left, raw)?,
            _ => {
                let attr = self.attribute(left)?;
                match kind {
                    ItemKind::Approx => LdapFilter::Approx(attr, self.unescape(raw)?),
                    ItemKind::Greater => LdapFilter::GreaterOrEqual(attr, self.unescape(raw)?),
                    ItemKind::Less => LdapFilter::LessOrEqual(attr, self.unescape(raw)?),
                    _ if raw == "*" => LdapFilter::Present(attr),
                    _ if raw.contains('*') => {
                        let pieces: Vec<&str> = raw.split('*').collect();
                        let mut sub = LdapSubstringFilter::default();
                        let last = pieces.len() - 1;
                        for (i, piece) in pieces.iter().enumerate() {
                            if piece.is_empty() {
                                continue;
                            }
                            let value = self.unescape(piece)?;
                            if i == 0 {
                                sub.initial = Some(value);
                            } else if i == last {
                                sub.final_ = Some(value);
                            } else {
                                sub.any.push(value);
                            }
                        }
                        LdapFilter::Substring(attr, sub)
                    }
                    _ => LdapFilter::Equality(attr, self.unescape(raw)?),
                }
            }
        };
        self.pos += end;
        Ok(filter)
    }

    fn attribute(&self, s: &str) -> Result<String> {
        let valid = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.' | '_'));
        if valid {
            Ok(s.to_string())
        } else {
            Err(self.error(&format!("bad attribute description {s:?}")))
        }
    }

    fn extensible(&self, left: &str, raw: &str) -> Result<LdapFilter> {
        let mut parts = left.split(':');
        let first = parts.next().unwrap_or_default();
        let type_ = if first.is_empty() {
            None
        } else {
            Some(self.attribute(first)?)
        };
        let mut dn_attributes = false;
        let mut matching_rule = None;
        for part in parts {
            if part.eq_ignore_ascii_case("dn") {
                dn_attributes = true;
            } else if !part.is_empty() {
                matching_rule = Some(part.to_string());
            }
        }
        if type_.is_none() && matching_rule.is_none() {
            return Err(self.error("extensible match needs a type or a rule"));
        }
        Ok(LdapFilter::Extensible(LdapMatchingRuleAssertion {
            matching_rule,
            type_,
            match_value: self.unescape(raw)?,
            dn_attributes,
        }))
    }

    fn unescape(&self, raw: &str) -> Result<String> {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'\\' {
                let hex = bytes.get(i + 1..i + 3).and_then(|pair| {
                    let s = std::str::from_utf8(pair).ok()?;
                    u8::from_str_radix(s, 16).ok()
                });
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => match bytes.get(i + 1) {
                        // Tolerate RFC 2254-style `\*`.
                        Some(&next) => {
                            out.push(next);
                            i += 2;
                        }
                        None => return Err(self.error("dangling backslash")),
                    },
                }
            } else {
                out.push(b);
                i += 1;
            }
        }
        String::from_utf8(out)
            .map_err(|_| self.error("assertion value is not UTF-8 (binary assertions unsupported)"))
    }
}

#[derive(Clone, Copy)]
enum ItemKind {
    Equal,
    Approx,
    Greater,
    Less,
    Extensible,
}

/// Renders a filter back to RFC 4515 text (for logs and test messages).
pub fn render_filter(filter: &LdapFilter) -> String {
    fn esc(v: &str) -> String {
        let mut out = String::with_capacity(v.len());
        for c in v.chars() {
            match c {
                '*' => out.push_str("\\2a"),
                '(' => out.push_str("\\28"),
                ')' => out.push_str("\\29"),
                '\\' => out.push_str("\\5c"),
                '\0' => out.push_str("\\00"),
                c => out.push(c),
            }
        }
        out
    }
    match filter {
        LdapFilter::And(items) => {
            format!("(&{})", items.iter().map(render_filter).collect::<String>())
        }
        LdapFilter::Or(items) => {
            format!("(|{})", items.iter().map(render_filter).collect::<String>())
        }
        LdapFilter::Not(inner) => format!("(!{})", render_filter(inner)),
        LdapFilter::Equality(a, v) => format!("({a}={})", esc(v)),
        LdapFilter::Approx(a, v) => format!("({a}~={})", esc(v)),
        LdapFilter::GreaterOrEqual(a, v) => format!("({a}>={})", esc(v)),
        LdapFilter::LessOrEqual(a, v) => format!("({a}<={})", esc(v)),
        LdapFilter::Present(a) => format!("({a}=*)"),
        LdapFilter::Substring(a, sub) => {
            let mut s = format!("({a}=");
            if let Some(i) = &sub.initial {
                s.push_str(&esc(i));
            }
            s.push('*');
            for any in &sub.any {
                s.push_str(&esc(any));
                s.push('*');
            }
            if let Some(f) = &sub.final_ {
                s.push_str(&esc(f));
            }
            s.push(')');
            s
        }
        LdapFilter::Extensible(m) => {
            let mut s = String::from("(");
            if let Some(t) = &m.type_ {
                s.push_str(t);
            }
            if m.dn_attributes {
                s.push_str(":dn");
            }
            if let Some(r) = &m.matching_rule {
                s.push(':');
                s.push_str(r);
            }
            s.push_str(":=");
            s.push_str(&esc(&m.match_value));
            s.push(')');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Entry {
        Entry::new("CN=Smith\\, John,OU=Sales,DC=corp,DC=example,DC=test")
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user"],
            )
            .with(
                "objectCategory",
                ["CN=Person,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=test"],
            )
            .with("sAMAccountName", ["jsmith"])
            .with("displayName", ["Zoë Ødegård"])
            .with("userAccountControl", ["514"])
            .with("uSNChanged", ["12345"])
            .with("whenChanged", ["20240301120000.0Z"])
            .with(
                "memberOf",
                ["CN=GG-Sales,OU=Groups,DC=corp,DC=example,DC=test"],
            )
    }

    fn group() -> Entry {
        Entry::new("CN=Domain Admins,CN=Users,DC=corp,DC=example,DC=test")
            .with("objectClass", ["top", "group"])
            .with("groupType", ["-2147483646"])
    }

    fn m(filter: &str, e: &Entry) -> bool {
        matches(&parse_filter(filter).unwrap(), e)
    }

    #[test]
    fn filetime_ranges_compare_as_64_bit_integers() {
        // accountExpires / lockoutTime / pwdLastSet: 18-19 digit FILETIMEs, "never" as
        // i64::MAX, 0 for "not set"; a window is (>= low)(<= high), as the AD source asks.
        let u = user()
            .with("accountExpires", ["134100000000000000"])
            .with("pwdLastSet", ["0"])
            .with("lockoutTime", ["9223372036854775807"]);
        let window =
            |attr: &str, low: i64, high: i64| format!("(&({attr}>={low})({attr}<={high}))");
        assert!(m(
            &window(
                "accountExpires",
                134_099_999_999_999_999,
                134_100_000_000_000_000
            ),
            &u
        ));
        assert!(!m(
            &window(
                "accountExpires",
                134_100_000_000_000_001,
                134_200_000_000_000_000
            ),
            &u
        ));
        assert!(!m(
            &window(
                "accountExpires",
                99_999_999_999_999_999,
                134_099_999_999_999_999
            ),
            &u
        ));
        assert!(!m(&window("pwdLastSet", 1, i64::MAX - 1), &u));
        assert!(!m(&window("lockoutTime", 1, i64::MAX - 1), &u));
        // An absent attribute matches neither bound, and its negation matches (as on AD).
        assert!(!m("(badPasswordTime>=0)", &u));
        assert!(m("(!(badPasswordTime<=0))", &u));
        assert!(m("(lockoutTime>=-1)", &u));
    }

    #[test]
    fn equality_is_case_insensitive() {
        let u = user();
        assert!(m("(sAMAccountName=JSMITH)", &u));
        assert!(m("(displayName=zoë ødegård)", &u));
        assert!(!m("(sAMAccountName=jsmit)", &u));
        assert!(m("(objectClass=USER)", &u));
        assert!(!m("(mail=jsmith@example.test)", &u));
    }

    #[test]
    fn object_category_short_names() {
        let u = user();
        assert!(m("(objectCategory=person)", &u));
        assert!(m("(objectCategory=user)", &u));
        assert!(m(
            "(objectCategory=cn=person,cn=schema,cn=configuration,dc=corp,dc=example,dc=test)",
            &u
        ));
        assert!(!m("(objectCategory=group)", &u));
        assert!(m("(&(objectCategory=person)(objectClass=user))", &u));
    }

    #[test]
    fn dn_values_compare_as_dns() {
        let u = user();
        assert!(m(
            "(memberOf=cn=gg-sales, ou=groups, dc=corp,dc=example,dc=test)",
            &u
        ));
        assert!(m(
            "(distinguishedName=CN=Smith\\5c, John,OU=Sales,DC=corp,DC=example,DC=test)",
            &u
        ));
    }

    #[test]
    fn ordering_is_numeric_for_integers() {
        let u = user();
        assert!(m("(uSNChanged>=12345)", &u));
        assert!(m("(uSNChanged>=9999)", &u)); // string order would say "12345" < "9999"
        assert!(!m("(uSNChanged>=12346)", &u));
        assert!(m("(uSNChanged<=12345)", &u));
        assert!(!m("(uSNChanged<=100)", &u));
        assert!(m("(whenChanged>=20240101000000.0Z)", &u));
        assert!(!m("(whenChanged>=20250101000000.0Z)", &u));
    }

    #[test]
    fn substrings() {
        let u = user();
        assert!(m("(sAMAccountName=js*)", &u));
        assert!(m("(sAMAccountName=*MITH)", &u));
        assert!(m("(sAMAccountName=j*m*h)", &u));
        assert!(!m("(sAMAccountName=j*x*h)", &u));
        assert!(m("(displayName=*ødeg*)", &u));
    }

    #[test]
    fn presence_and_boolean_logic() {
        let u = user();
        assert!(m("(objectClass=*)", &u));
        assert!(m("(distinguishedName=*)", &u));
        assert!(!m("(mail=*)", &u));
        assert!(m("(!(mail=*))", &u));
        assert!(m("(|(mail=*)(sAMAccountName=jsmith))", &u));
        assert!(!m("(&(mail=*)(sAMAccountName=jsmith))", &u));
    }

    #[test]
    fn bitwise_rules() {
        let u = user();
        assert!(m("(userAccountControl:1.2.840.113556.1.4.803:=2)", &u));
        assert!(!m("(userAccountControl:1.2.840.113556.1.4.803:=16)", &u));
        assert!(m("(userAccountControl:1.2.840.113556.1.4.804:=18)", &u));
        assert!(!m("(!(userAccountControl:1.2.840.113556.1.4.803:=2))", &u));
        let g = group();
        // Security-enabled global group: 0x80000002.
        assert!(m("(groupType:1.2.840.113556.1.4.803:=2147483648)", &g));
        assert!(m("(groupType:1.2.840.113556.1.4.803:=-2147483648)", &g));
        assert!(m("(groupType:1.2.840.113556.1.4.803:=2147483650)", &g));
        assert!(!m("(groupType:1.2.840.113556.1.4.803:=4)", &g));
        assert!(m("(groupType:1.2.840.113556.1.4.804:=6)", &g));
    }

    #[test]
    fn unknown_rule_is_undefined_even_negated() {
        let u = user();
        assert!(!m("(userAccountControl:9.9.9:=2)", &u));
        assert!(!m("(!(userAccountControl:9.9.9:=2))", &u));
    }

    #[test]
    fn tombstone_filter() {
        let t = Entry::new("CN=x\\0ADEL:1,CN=Deleted Objects,DC=corp")
            .with("isDeleted", ["TRUE"])
            .with("uSNChanged", ["20001"]);
        assert!(m("(&(isDeleted=TRUE)(uSNChanged>=20000))", &t));
        assert!(m("(isDeleted=true)", &t));
        assert!(!m("(isDeleted=TRUE)", &user()));
    }

    #[test]
    fn parser_round_trips_and_rejects() {
        let text = "(&(objectClass=user)(cn=a\\2ab*)(!(x>=1))(uac:1.2.840.113556.1.4.803:=2))";
        let f = parse_filter(text).unwrap();
        assert_eq!(render_filter(&f), text);
        assert_eq!(
            parse_filter("objectClass=*").unwrap(),
            LdapFilter::Present("objectClass".into())
        );
        assert!(parse_filter("(a=b").is_err());
        assert!(parse_filter("(=b)").is_err());
        assert!(parse_filter("(a=b))").is_err());
        assert!(parse_filter("(objectGUID=\\ff\\fe)").is_err());
        assert_eq!(
            parse_filter("(cn=a\\29b)").unwrap(),
            LdapFilter::Equality("cn".into(), "a)b".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = parse_filter(&s);
        }

        #[test]
        fn equality_round_trips(v in "[^\\x00]{1,20}") {
            let f = LdapFilter::Equality("cn".into(), v.clone());
            let text = render_filter(&f);
            let back = parse_filter(&text).unwrap();
            proptest::prop_assert_eq!(back, f);
        }
    }
}
