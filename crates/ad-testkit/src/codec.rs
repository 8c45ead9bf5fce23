//! Framing of client requests: ldap3_proto's `LdapCodec` behind a guard.
//!
//! The guard reads the BER header itself, so that a stream which is not LDAP, or announces a
//! message larger than the server accepts, is refused at once instead of waiting for bytes that
//! never come; and so that a well-framed message ldap3_proto cannot decode (it keeps filter
//! assertion values as strings, so a binary `objectGUID` assertion fails) is reported with its
//! message id, letting the server answer that one request and keep the connection.

use ldap3_proto::LdapCodec;
use ldap3_proto::proto::LdapMsg;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Largest request accepted (AD's MaxReceiveBuffer is 10 MB; requests here are small).
pub(crate) const MAX_REQUEST: usize = 1 << 20;

/// One framed request.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A decoded message.
    Message(Box<LdapMsg>),
    /// A complete message that could not be decoded.
    Undecodable {
        /// Its message id.
        msgid: i32,
        /// The BER tag byte of its protocol operation (`0x63` search, ...).
        op_tag: u8,
    },
}

/// The server side codec.
pub(crate) struct RequestCodec(LdapCodec);

impl RequestCodec {
    pub(crate) fn new() -> Self {
        Self(LdapCodec::new(Some(MAX_REQUEST), None))
    }
}

/// `(header length, content length)` of the BER element at the start of `buf`, once the header
/// is complete; an error when it cannot be an LDAPMessage.
fn header(buf: &[u8]) -> Option<std::io::Result<(usize, usize)>> {
    // Every LDAPMessage is a universal constructed SEQUENCE.
    if *buf.first()? != 0x30 {
        return Some(Err(std::io::Error::other("not an LDAPMessage")));
    }
    let first_len = *buf.get(1)?;
    if first_len < 0x80 {
        return Some(Ok((2, usize::from(first_len))));
    }
    let n = usize::from(first_len & 0x7f);
    if n == 0 || n > 4 {
        return Some(Err(std::io::Error::other("unsupported BER length form")));
    }
    let bytes = buf.get(2..2 + n)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some(Ok((2 + n, len)))
}

/// The message id and operation tag of a complete LDAPMessage body.
fn peek_id_and_op(body: &[u8]) -> Option<(i32, u8)> {
    let (id, rest) = split_id(body)?;
    Some((id, *rest.first()?))
}

/// The messageID (a BER INTEGER of 1 to 4 bytes) at the start of an LDAPMessage body, and
/// the bytes after it (protocol op and controls).
pub(crate) fn split_id(body: &[u8]) -> Option<(i32, &[u8])> {
    if *body.first()? != 0x02 {
        return None;
    }
    let len = usize::from(*body.get(1)?);
    if len == 0 || len > 4 {
        return None;
    }
    let digits = body.get(2..2 + len)?;
    let negative = digits.first().is_some_and(|b| b & 0x80 != 0);
    let start: i64 = if negative { -1 } else { 0 };
    let id = digits
        .iter()
        .fold(start, |acc, b| (acc << 8) | i64::from(*b));
    Some((i32::try_from(id).ok()?, body.get(2 + len..)?))
}

impl Decoder for RequestCodec {
    type Item = Inbound;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Inbound>> {
        let Some(head) = header(buf) else {
            return Ok(None);
        };
        let (head_len, body_len) = head?;
        let total = head_len + body_len;
        if total > MAX_REQUEST {
            return Err(std::io::Error::other(
                "request larger than the server accepts",
            ));
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        let peeked = frame.get(head_len..).and_then(peek_id_and_op);
        match self.0.decode(&mut frame) {
            Ok(Some(msg)) => Ok(Some(Inbound::Message(Box::new(msg)))),
            Ok(None) | Err(_) => match peeked {
                Some((msgid, op_tag)) => Ok(Some(Inbound::Undecodable { msgid, op_tag })),
                None => Err(std::io::Error::other("undecodable LDAPMessage")),
            },
        }
    }
}

impl Encoder<LdapMsg> for RequestCodec {
    type Error = std::io::Error;

    fn encode(&mut self, msg: LdapMsg, buf: &mut BytesMut) -> std::io::Result<()> {
        self.0.encode(msg, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_refuses_non_ldap() {
        // msgid 5, search request tag.
        assert_eq!(
            peek_id_and_op(&[0x02, 0x01, 0x05, 0x63, 0x00]),
            Some((5, 0x63))
        );
        assert_eq!(
            peek_id_and_op(&[0x02, 0x02, 0x01, 0x00, 0x60]),
            Some((256, 0x60))
        );
        assert!(header(b"GET /").unwrap().is_err());
        assert_eq!(header(&[0x30, 0x05]).unwrap().unwrap(), (2, 5));
        assert_eq!(
            header(&[0x30, 0x82, 0x01, 0x00]).unwrap().unwrap(),
            (4, 256)
        );
        assert!(header(&[0x30, 0x85]).unwrap().is_err());
        assert!(header(&[0x30]).is_none());
    }

    #[test]
    fn oversized_and_undecodable_frames() {
        let mut codec = RequestCodec::new();
        let mut huge = BytesMut::from(&[0x30u8, 0x84, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(codec.decode(&mut huge).is_err());
        // A complete SEQUENCE { INTEGER 7, [APPLICATION 3] garbage }.
        let mut bad = BytesMut::from(&[0x30u8, 0x05, 0x02, 0x01, 0x07, 0x63, 0x00][..]);
        match codec.decode(&mut bad).unwrap() {
            Some(Inbound::Undecodable { msgid, op_tag }) => {
                assert_eq!((msgid, op_tag), (7, 0x63));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(bad.is_empty());
        let mut partial = BytesMut::from(&[0x30u8, 0x05, 0x02][..]);
        assert!(codec.decode(&mut partial).unwrap().is_none());
    }
}
