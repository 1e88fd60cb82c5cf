//! The FastCGI protocol as `fastcgi.h` of libfcgi 2.4 declares it: the
//! record types, roles, flags and statuses as `int` constants, and the
//! fixed-size records as `#[repr(C)]` structs of `unsigned char` fields in
//! wire order (multi-byte numbers big-endian, split into `B1`/`B0` bytes).
//!
//! `include/fastcgi.h` is generated from this file by cbindgen (see
//! `tests/headers.rs`), so names, values and field order here are the C
//! API; the constants keep C's `int` type for the same reason.
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_int, c_uchar};

/// Listening socket file number
pub const FCGI_LISTENSOCK_FILENO: c_int = 0;

/// Largest content length of one record.
pub const FCGI_MAX_LENGTH: c_int = 0xffff;

/// Number of bytes in a FCGI_Header. Future versions of the protocol
/// will not reduce this number.
pub const FCGI_HEADER_LEN: c_int = 8;

/// Value for version component of FCGI_Header
pub const FCGI_VERSION_1: c_int = 1;

/// Record type: starts a request (web server to application).
pub const FCGI_BEGIN_REQUEST: c_int = 1;
/// Record type: the web server aborts a request.
pub const FCGI_ABORT_REQUEST: c_int = 2;
/// Record type: the application ends a request.
pub const FCGI_END_REQUEST: c_int = 3;
/// Record type: name-value pairs of the request environment.
pub const FCGI_PARAMS: c_int = 4;
/// Record type: request body.
pub const FCGI_STDIN: c_int = 5;
/// Record type: response.
pub const FCGI_STDOUT: c_int = 6;
/// Record type: error output.
pub const FCGI_STDERR: c_int = 7;
/// Record type: the filter role's data stream.
pub const FCGI_DATA: c_int = 8;
/// Record type: management query of the application's variables.
pub const FCGI_GET_VALUES: c_int = 9;
/// Record type: answer to FCGI_GET_VALUES.
pub const FCGI_GET_VALUES_RESULT: c_int = 10;
/// Record type: answer to a management record of unknown type.
pub const FCGI_UNKNOWN_TYPE: c_int = 11;
/// Highest record type defined by the protocol.
pub const FCGI_MAXTYPE: c_int = FCGI_UNKNOWN_TYPE;

/// Value for requestId component of FCGI_Header (management records)
pub const FCGI_NULL_REQUEST_ID: c_int = 0;

/// Mask for flags component of FCGI_BeginRequestBody: keep the
/// connection open after the request.
pub const FCGI_KEEP_CONN: c_int = 1;

/// Role (FCGI_BeginRequestBody): produce the response.
pub const FCGI_RESPONDER: c_int = 1;
/// Role (FCGI_BeginRequestBody): accept or refuse a request.
pub const FCGI_AUTHORIZER: c_int = 2;
/// Role (FCGI_BeginRequestBody): transform FCGI_DATA into the response.
pub const FCGI_FILTER: c_int = 3;

/// protocolStatus (FCGI_EndRequestBody): normal end of request.
pub const FCGI_REQUEST_COMPLETE: c_int = 0;
/// protocolStatus: refused, the application does not multiplex connections.
pub const FCGI_CANT_MPX_CONN: c_int = 1;
/// protocolStatus: refused, the application is out of some resource.
pub const FCGI_OVERLOADED: c_int = 2;
/// protocolStatus: refused, the role is not supported.
pub const FCGI_UNKNOWN_ROLE: c_int = 3;

/// Variable name for FCGI_GET_VALUES / FCGI_GET_VALUES_RESULT records:
/// the most concurrent connections the application accepts.
pub const FCGI_MAX_CONNS: &str = "FCGI_MAX_CONNS";
/// Variable name: the most concurrent requests the application accepts.
pub const FCGI_MAX_REQS: &str = "FCGI_MAX_REQS";
/// Variable name: "1" if the application multiplexes connections, else "0".
pub const FCGI_MPXS_CONNS: &str = "FCGI_MPXS_CONNS";

/// The header that starts every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_Header {
    pub version: c_uchar,
    pub r#type: c_uchar,
    pub requestIdB1: c_uchar,
    pub requestIdB0: c_uchar,
    pub contentLengthB1: c_uchar,
    pub contentLengthB0: c_uchar,
    pub paddingLength: c_uchar,
    pub reserved: c_uchar,
}

/// Body of an FCGI_BEGIN_REQUEST record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_BeginRequestBody {
    pub roleB1: c_uchar,
    pub roleB0: c_uchar,
    pub flags: c_uchar,
    pub reserved: [c_uchar; 5],
}

/// A whole FCGI_BEGIN_REQUEST record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_BeginRequestRecord {
    pub header: FCGI_Header,
    pub body: FCGI_BeginRequestBody,
}

/// Body of an FCGI_END_REQUEST record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_EndRequestBody {
    pub appStatusB3: c_uchar,
    pub appStatusB2: c_uchar,
    pub appStatusB1: c_uchar,
    pub appStatusB0: c_uchar,
    pub protocolStatus: c_uchar,
    pub reserved: [c_uchar; 3],
}

/// A whole FCGI_END_REQUEST record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_EndRequestRecord {
    pub header: FCGI_Header,
    pub body: FCGI_EndRequestBody,
}

/// Body of an FCGI_UNKNOWN_TYPE record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_UnknownTypeBody {
    pub r#type: c_uchar,
    pub reserved: [c_uchar; 7],
}

/// A whole FCGI_UNKNOWN_TYPE record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FCGI_UnknownTypeRecord {
    pub header: FCGI_Header,
    pub body: FCGI_UnknownTypeBody,
}

impl FCGI_Header {
    /// A version-1 header for a record of `type` carrying `content_length`
    /// bytes followed by `padding_length` bytes of padding.
    pub const fn new(r#type: u8, request_id: u16, content_length: u16, padding_length: u8) -> Self {
        let [requestIdB1, requestIdB0] = request_id.to_be_bytes();
        let [contentLengthB1, contentLengthB0] = content_length.to_be_bytes();
        FCGI_Header {
            version: FCGI_VERSION_1 as c_uchar,
            r#type,
            requestIdB1,
            requestIdB0,
            contentLengthB1,
            contentLengthB0,
            paddingLength: padding_length,
            reserved: 0,
        }
    }

    /// The request id (`requestIdB1`, `requestIdB0`).
    pub const fn request_id(&self) -> u16 {
        u16::from_be_bytes([self.requestIdB1, self.requestIdB0])
    }

    /// The content length (`contentLengthB1`, `contentLengthB0`).
    pub const fn content_length(&self) -> u16 {
        u16::from_be_bytes([self.contentLengthB1, self.contentLengthB0])
    }

    /// The header as it goes on the wire.
    pub const fn to_bytes(&self) -> [u8; 8] {
        [
            self.version,
            self.r#type,
            self.requestIdB1,
            self.requestIdB0,
            self.contentLengthB1,
            self.contentLengthB0,
            self.paddingLength,
            self.reserved,
        ]
    }

    /// A header read from the wire (no field is checked).
    pub const fn from_bytes(b: [u8; 8]) -> Self {
        FCGI_Header {
            version: b[0],
            r#type: b[1],
            requestIdB1: b[2],
            requestIdB0: b[3],
            contentLengthB1: b[4],
            contentLengthB0: b[5],
            paddingLength: b[6],
            reserved: b[7],
        }
    }
}

impl FCGI_BeginRequestBody {
    /// A body for `role` with `flags` (e.g. FCGI_KEEP_CONN).
    pub const fn new(role: u16, flags: u8) -> Self {
        let [roleB1, roleB0] = role.to_be_bytes();
        FCGI_BeginRequestBody {
            roleB1,
            roleB0,
            flags,
            reserved: [0; 5],
        }
    }

    /// The role (`roleB1`, `roleB0`).
    pub const fn role(&self) -> u16 {
        u16::from_be_bytes([self.roleB1, self.roleB0])
    }
}

impl FCGI_EndRequestBody {
    /// A body carrying the application's exit status and a protocol status.
    pub const fn new(app_status: u32, protocol_status: u8) -> Self {
        let [appStatusB3, appStatusB2, appStatusB1, appStatusB0] = app_status.to_be_bytes();
        FCGI_EndRequestBody {
            appStatusB3,
            appStatusB2,
            appStatusB1,
            appStatusB0,
            protocolStatus: protocol_status,
            reserved: [0; 3],
        }
    }

    /// The application status (`appStatusB3` .. `appStatusB0`).
    pub const fn app_status(&self) -> u32 {
        u32::from_be_bytes([
            self.appStatusB3,
            self.appStatusB2,
            self.appStatusB1,
            self.appStatusB0,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn records_are_packed_bytes_like_the_c_structs() {
        assert_eq!(size_of::<FCGI_Header>(), FCGI_HEADER_LEN as usize);
        assert_eq!(size_of::<FCGI_BeginRequestBody>(), 8);
        assert_eq!(size_of::<FCGI_EndRequestBody>(), 8);
        assert_eq!(size_of::<FCGI_UnknownTypeBody>(), 8);
        assert_eq!(size_of::<FCGI_BeginRequestRecord>(), 16);
        assert_eq!(size_of::<FCGI_EndRequestRecord>(), 16);
        assert_eq!(size_of::<FCGI_UnknownTypeRecord>(), 16);
        assert_eq!(align_of::<FCGI_EndRequestRecord>(), 1);
        assert_eq!(offset_of!(FCGI_Header, paddingLength), 6);
        assert_eq!(offset_of!(FCGI_BeginRequestBody, reserved), 3);
        assert_eq!(offset_of!(FCGI_EndRequestBody, protocolStatus), 4);
        assert_eq!(offset_of!(FCGI_EndRequestRecord, body), 8);
        assert_eq!(offset_of!(FCGI_UnknownTypeBody, reserved), 1);
    }

    #[test]
    fn header_fields_are_big_endian_on_the_wire() {
        let h = FCGI_Header::new(FCGI_STDOUT as u8, 0x0102, 0xfffe, 2);
        assert_eq!(h.to_bytes(), [1, 6, 0x01, 0x02, 0xff, 0xfe, 2, 0]);
        assert_eq!(h.request_id(), 0x0102);
        assert_eq!(h.content_length(), 0xfffe);
        assert_eq!(FCGI_Header::from_bytes(h.to_bytes()), h);
        let raw = [9, 11, 0, 0, 0x12, 0x34, 0, 7];
        let parsed = FCGI_Header::from_bytes(raw);
        assert_eq!((parsed.version, parsed.r#type, parsed.reserved), (9, 11, 7));
        assert_eq!(parsed.content_length(), 0x1234);
        assert_eq!(parsed.to_bytes(), raw);
    }

    #[test]
    fn bodies_encode_role_and_status() {
        let b = FCGI_BeginRequestBody::new(FCGI_FILTER as u16, FCGI_KEEP_CONN as u8);
        assert_eq!((b.roleB1, b.roleB0, b.flags), (0, 3, 1));
        assert_eq!(b.role(), 3);
        assert_eq!(FCGI_BeginRequestBody::new(0x0201, 0).role(), 0x0201);
        let e = FCGI_EndRequestBody::new(0x8000_0102, FCGI_OVERLOADED as u8);
        assert_eq!(
            [
                e.appStatusB3,
                e.appStatusB2,
                e.appStatusB1,
                e.appStatusB0,
                e.protocolStatus
            ],
            [0x80, 0, 1, 2, 2]
        );
        assert_eq!(e.app_status(), 0x8000_0102);
    }

    #[test]
    fn constants_have_the_protocol_values() {
        assert_eq!(FCGI_MAXTYPE, FCGI_UNKNOWN_TYPE);
        assert_eq!(FCGI_MAXTYPE, 11);
        assert_eq!(FCGI_MAX_LENGTH, u16::MAX as c_int);
        assert_eq!(
            [FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS],
            ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"]
        );
    }
}
