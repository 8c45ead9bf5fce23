//! `gss_acquire_cred_from`: acquire Kerberos initiator credentials from a named *credential
//! store* (MIT krb5 ≥ 1.11), e.g. `{client_keytab = FILE:/etc/…/svc.keytab,
//! ccache = MEMORY:…}`.
//!
//! # Why this crate exists (the FFI boundary)
//!
//! The workspace forbids `unsafe`. The safe `libgssapi` 0.9 crate (used by `cross-krb5` and
//! `ldap3`) only wraps `gss_acquire_cred`, which reads the *default* credential cache and
//! client keytab — chosen by the environment variables `KRB5CCNAME` and
//! `KRB5_CLIENT_KTNAME`. Setting those in a running, multi-threaded process is itself
//! `unsafe` (`std::env::set_var`, edition 2024) and would hijack the tickets of every other
//! GSSAPI user in the process. `gss_acquire_cred_from` names the keytab and the cache
//! explicitly; with a `client_keytab` MIT krb5 obtains the initial ticket from it and renews
//! it (well before expiry) into the given `ccache`, by itself.
//!
//! This crate is that one call, and nothing else: one `unsafe` block in
//! [`acquire_initiator_from`], everything it hands to C owned by the function for the call's
//! duration, and the result wrapped at once in `libgssapi`'s owning [`Cred`] (released on
//! drop). Its lints are the workspace's, except `unsafe_code = "deny"` (not "forbid") so
//! that this single function can allow it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::{CString, c_void};
use std::ptr;

pub use libgssapi::credential::Cred;
pub use libgssapi::error::{Error, MajorFlags};
use libgssapi_sys::{
    GSS_C_INITIATE, GSS_S_COMPLETE, OM_uint32, gss_OID_desc, gss_OID_set_desc,
    gss_acquire_cred_from, gss_buffer_desc, gss_cred_id_t, gss_import_name,
    gss_key_value_element_desc, gss_key_value_set_desc, gss_name_t, gss_release_name,
};

/// krb5 mechanism OID 1.2.840.113554.1.2.2 (RFC 1964), DER contents.
const KRB5_MECH: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// GSS_KRB5_NT_PRINCIPAL_NAME 1.2.840.113554.1.2.2.1 (a `user@REALM` / `service/host@REALM`
/// principal name), DER contents.
const KRB5_NT_PRINCIPAL_NAME: [u8; 10] =
    [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];

fn bad_input(major: MajorFlags) -> Error {
    Error { major, minor: 0 }
}

/// Acquire initiator (client) credentials for the krb5 mechanism from a credential store.
///
/// `principal`: the client principal (`svc-sync@CORP.EXAMPLE.TEST`), or `None` for the
/// store's default. `store`: key/value pairs of MIT's credential store extension —
/// `ccache` (`MEMORY:name`, `FILE:/path`), `client_keytab` (`FILE:/path`), … With a
/// `client_keytab`, MIT krb5 gets the initial ticket from the keytab when the cache has
/// none (or when it is due for renewal) at the first use of the credential.
///
/// Blocking: may read files and talk to the KDC. A NUL byte in any input is refused with
/// `GSS_S_BAD_NAME` / `GSS_S_CALL_INACCESSIBLE_READ`, minor 0.
#[allow(unsafe_code)]
pub fn acquire_initiator_from(
    principal: Option<&str>,
    store: &[(&str, &str)],
) -> Result<Cred, Error> {
    let pairs: Vec<(CString, CString)> = store
        .iter()
        .map(|(k, v)| Ok((CString::new(*k)?, CString::new(*v)?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| bad_input(MajorFlags::GSS_S_CALL_INACCESSIBLE_READ))?;
    if principal.is_some_and(|p| p.contains('\0')) {
        return Err(bad_input(MajorFlags::GSS_S_BAD_NAME));
    }
    let mut elements: Vec<gss_key_value_element_desc> = pairs
        .iter()
        .map(|(k, v)| gss_key_value_element_desc {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let store_desc = gss_key_value_set_desc {
        count: elements.len() as OM_uint32,
        elements: elements.as_mut_ptr(),
    };
    let mut mech_bytes = KRB5_MECH;
    let mut mech = gss_OID_desc {
        length: mech_bytes.len() as OM_uint32,
        elements: mech_bytes.as_mut_ptr().cast::<c_void>(),
    };
    let mut mechs = gss_OID_set_desc {
        count: 1,
        elements: &mut mech,
    };
    let mut name_type_bytes = KRB5_NT_PRINCIPAL_NAME;
    let mut name_type = gss_OID_desc {
        length: name_type_bytes.len() as OM_uint32,
        elements: name_type_bytes.as_mut_ptr().cast::<c_void>(),
    };
    let mut principal_bytes: Vec<u8> = principal.map(|p| p.as_bytes().to_vec()).unwrap_or_default();

    // SAFETY: every pointer handed to C points into a local (`elements`, `pairs`, `mech*`,
    // `name_type*`, `principal_bytes`) that outlives both calls; GSSAPI only reads the
    // inputs (the `*mut` in the C prototypes are historical). The imported name is released
    // on every path; the credential handle, on success, is moved into `Cred`, which owns it
    // and calls gss_release_cred on drop. Output pointers are initialised to null.
    unsafe {
        let mut minor: OM_uint32 = 0;
        let mut name: gss_name_t = ptr::null_mut();
        if principal.is_some() {
            let mut buffer = gss_buffer_desc {
                length: principal_bytes.len(),
                value: principal_bytes.as_mut_ptr().cast::<c_void>(),
            };
            let major = gss_import_name(&mut minor, &mut buffer, &mut name_type, &mut name);
            if major != GSS_S_COMPLETE {
                return Err(Error {
                    major: MajorFlags::from_bits_retain(major),
                    minor,
                });
            }
        }
        let mut cred: gss_cred_id_t = ptr::null_mut();
        let major = gss_acquire_cred_from(
            &mut minor,
            name,
            0xffff_ffff, // GSS_C_INDEFINITE: as long as the ticket lasts
            &mut mechs,
            GSS_C_INITIATE as i32,
            &store_desc,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        let acquire_minor = minor;
        if !name.is_null() {
            gss_release_name(&mut minor, &mut name);
        }
        if major == GSS_S_COMPLETE {
            Ok(Cred::from(cred))
        } else {
            Err(Error {
                major: MajorFlags::from_bits_retain(major),
                minor: acquire_minor,
            })
        }
    }
}
