//! HTTP/2 frames (RFC 9113, section 4 and 6): the few a unary gRPC client sends and reads.
//!
//! The path-authority client in this module's parent writes these by hand because no HTTP/2
//! library lets a caller put a socket path into `:authority`; tests may also use them to send
//! deliberately odd frames to the provider.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a client sends before its first frame.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frame header's length: 24-bit length, type, flags, 31-bit stream id.
pub const HEADER_LEN: usize = 9;

/// The largest frame payload a peer must accept before it raises `SETTINGS_MAX_FRAME_SIZE`.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// The initial flow-control window of a connection and of each stream.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types.
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// DATA, HEADERS: the sender's last frame on the stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS, CONTINUATION: the header block is complete.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS: the payload starts with a pad length and ends with padding.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: the payload starts with 5 bytes of priority information.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// One frame: its type, flags, stream and raw payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame type, one of [`kind`].
    pub kind: u8,
    /// The flags, from [`flag`].
    pub flags: u8,
    /// The stream id (0 for the connection).
    pub stream: u32,
    /// The payload, padding included.
    pub payload: Bytes,
}

/// A frame that breaks RFC 9113.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/2 frame error: {}", self.0)
    }
}

impl std::error::Error for FrameError {}

fn error<T>(msg: impl Into<String>) -> Result<T, FrameError> {
    Err(FrameError(msg.into()))
}

impl Frame {
    /// A frame from its parts.
    pub fn new(kind: u8, flags: u8, stream: u32, payload: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload: payload.into(),
        }
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Appends the frame, header and payload, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let len = self.payload.len();
        assert!(len < 1 << 24, "frame payload of {len} bytes");
        out.reserve(HEADER_LEN + len);
        out.put_uint(len as u64, 3);
        out.put_u8(self.kind);
        out.put_u8(self.flags);
        out.put_u32(self.stream & 0x7fff_ffff);
        out.put_slice(&self.payload);
    }

    /// Takes one whole frame off the front of `buf`, or returns `None` if more bytes are needed.
    /// A frame larger than `max_payload` is an error, as it is for any HTTP/2 endpoint.
    pub fn decode(buf: &mut BytesMut, max_payload: u32) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
        if len > max_payload as usize {
            return error(format!(
                "frame of {len} bytes exceeds the limit of {max_payload}"
            ));
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }

        let mut header = buf.split_to(HEADER_LEN);
        header.advance(3);
        let kind = header.get_u8();
        let flags = header.get_u8();
        let stream = header.get_u32() & 0x7fff_ffff;
        let payload = buf.split_to(len).freeze();
        Ok(Some(Frame {
            kind,
            flags,
            stream,
            payload,
        }))
    }

    /// The payload of a DATA or HEADERS frame without padding (and, for HEADERS, without the
    /// priority fields): the data, or the header block fragment.
    pub fn body(&self) -> Result<Bytes, FrameError> {
        let mut body = self.payload.clone();
        let mut pad = 0;
        if self.has(flag::PADDED) && matches!(self.kind, kind::DATA | kind::HEADERS) {
            if body.is_empty() {
                return error("PADDED frame without a pad length");
            }
            pad = usize::from(body.get_u8());
        }
        if self.has(flag::PRIORITY) && self.kind == kind::HEADERS {
            if body.len() < 5 {
                return error("HEADERS with PRIORITY shorter than 5 bytes");
            }
            body.advance(5);
        }
        if pad > body.len() {
            return error("padding longer than the frame");
        }
        body.truncate(body.len() - pad);
        Ok(body)
    }

    /// SETTINGS with the given (identifier, value) pairs.
    pub fn settings(values: &[(u16, u32)]) -> Frame {
        let mut payload = BytesMut::with_capacity(values.len() * 6);
        for (id, value) in values {
            payload.put_u16(*id);
            payload.put_u32(*value);
        }
        Frame::new(kind::SETTINGS, 0, 0, payload)
    }

    /// The (identifier, value) pairs of a SETTINGS frame.
    pub fn settings_values(&self) -> Result<Vec<(u16, u32)>, FrameError> {
        if self.stream != 0 || !self.payload.len().is_multiple_of(6) {
            return error("malformed SETTINGS");
        }
        let mut payload = self.payload.clone();
        let mut values = Vec::new();
        while payload.has_remaining() {
            values.push((payload.get_u16(), payload.get_u32()));
        }
        Ok(values)
    }

    /// WINDOW_UPDATE granting `increment` bytes on `stream` (0: the connection).
    pub fn window_update(stream: u32, increment: u32) -> Frame {
        Frame::new(
            kind::WINDOW_UPDATE,
            0,
            stream,
            (increment & 0x7fff_ffff).to_be_bytes().to_vec(),
        )
    }

    /// A 4-byte big-endian value at the start of the payload, high bit cleared when `mask`:
    /// the increment of WINDOW_UPDATE, the error code of RST_STREAM.
    fn u32_at(&self, offset: usize, mask: bool) -> Result<u32, FrameError> {
        let bytes = self
            .payload
            .get(offset..offset + 4)
            .ok_or_else(|| FrameError(format!("frame type {} too short", self.kind)))?;
        let value = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        Ok(if mask { value & 0x7fff_ffff } else { value })
    }

    /// The increment of a WINDOW_UPDATE.
    pub fn window_increment(&self) -> Result<u32, FrameError> {
        self.u32_at(0, true)
    }

    /// RST_STREAM with an error code.
    pub fn rst_stream(stream: u32, code: u32) -> Frame {
        Frame::new(kind::RST_STREAM, 0, stream, code.to_be_bytes().to_vec())
    }

    /// The error code of a RST_STREAM.
    pub fn error_code(&self) -> Result<u32, FrameError> {
        self.u32_at(0, false)
    }

    /// The last stream id, error code and debug data of a GOAWAY.
    pub fn goaway(&self) -> Result<(u32, u32, Bytes), FrameError> {
        let last = self.u32_at(0, true)?;
        let code = self.u32_at(4, false)?;
        Ok((last, code, self.payload.slice(8..)))
    }

    /// The PING answering this one: same payload, ACK set.
    pub fn ping_ack(&self) -> Frame {
        Frame::new(kind::PING, flag::ACK, 0, self.payload.clone())
    }

    /// A header block as HEADERS plus as many CONTINUATION frames as `max_payload` requires.
    pub fn headers(stream: u32, block: Bytes, end_stream: bool, max_payload: u32) -> Vec<Frame> {
        let max = max_payload as usize;
        let mut frames = Vec::new();
        let mut rest = block;
        loop {
            let chunk = rest.split_to(rest.len().min(max));
            let kind = if frames.is_empty() {
                kind::HEADERS
            } else {
                kind::CONTINUATION
            };
            let mut flags = 0;
            if kind == kind::HEADERS && end_stream {
                flags |= flag::END_STREAM;
            }
            if rest.is_empty() {
                flags |= flag::END_HEADERS;
            }
            frames.push(Frame::new(kind, flags, stream, chunk));
            if rest.is_empty() {
                return frames;
            }
        }
    }
}

/// The name of an HTTP/2 error code (RFC 9113, section 7), as Go's `http2.ErrCode` prints it.
pub fn error_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("unknown error code 0x{other:x}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_the_nine_byte_header() {
        let mut out = BytesMut::new();
        Frame::new(kind::DATA, flag::END_STREAM, 3, &b"abc"[..]).encode(&mut out);
        assert_eq!(&out[..], b"\x00\x00\x03\x00\x01\x00\x00\x00\x03abc");
    }

    #[test]
    fn decode_waits_for_a_whole_frame_and_round_trips() {
        let frame = Frame::new(kind::HEADERS, flag::END_HEADERS, 0x7fff_ffff, vec![7; 300]);
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        Frame::settings(&[]).encode(&mut wire);

        let mut partial = BytesMut::from(&wire[..100]);
        assert_eq!(Frame::decode(&mut partial, 16_384), Ok(None));
        assert_eq!(partial.len(), 100, "nothing consumed");

        assert_eq!(Frame::decode(&mut wire, 16_384), Ok(Some(frame)));
        let settings = Frame::decode(&mut wire, 16_384).unwrap().unwrap();
        assert_eq!(settings.kind, kind::SETTINGS);
        assert!(wire.is_empty());
    }

    #[test]
    fn decode_rejects_oversized_frames() {
        let mut wire = BytesMut::new();
        Frame::new(kind::DATA, 0, 1, vec![0; 20_000]).encode(&mut wire);
        assert!(Frame::decode(&mut wire, 16_384).is_err());
    }

    #[test]
    fn reserved_stream_bit_is_ignored() {
        let mut wire = BytesMut::from(&b"\x00\x00\x00\x04\x00\x80\x00\x00\x00"[..]);
        assert_eq!(Frame::decode(&mut wire, 16_384).unwrap().unwrap().stream, 0);
    }

    #[test]
    fn body_strips_padding_and_priority() {
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0, 0, 0, 1, 16]);
        payload.extend_from_slice(b"block");
        payload.extend_from_slice(&[0, 0]);
        let frame = Frame::new(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, payload);
        assert_eq!(frame.body().unwrap(), Bytes::from_static(b"block"));

        let data = Frame::new(kind::DATA, flag::PADDED, 1, &b"\x03hi\0\0\0"[..]);
        assert_eq!(data.body().unwrap(), Bytes::from_static(b"hi"));

        let bad = Frame::new(kind::DATA, flag::PADDED, 1, &b"\x09hi"[..]);
        assert!(bad.body().is_err());
    }

    #[test]
    fn settings_round_trip() {
        let frame = Frame::settings(&[
            (setting::MAX_FRAME_SIZE, 1 << 20),
            (setting::ENABLE_PUSH, 0),
        ]);
        assert_eq!(frame.payload.len(), 12);
        assert_eq!(
            frame.settings_values().unwrap(),
            vec![
                (setting::MAX_FRAME_SIZE, 1 << 20),
                (setting::ENABLE_PUSH, 0)
            ]
        );
        assert!(
            Frame::new(kind::SETTINGS, 0, 0, vec![0; 5])
                .settings_values()
                .is_err()
        );
    }

    #[test]
    fn control_frames_round_trip() {
        assert_eq!(Frame::window_update(5, 1000).window_increment(), Ok(1000));
        assert_eq!(Frame::rst_stream(1, 8).error_code(), Ok(8));
        assert_eq!(error_name(8), "CANCEL");
        assert_eq!(error_name(0x1), "PROTOCOL_ERROR");

        let goaway = Frame::new(
            kind::GOAWAY,
            0,
            0,
            &b"\x80\x00\x00\x07\x00\x00\x00\x02bye"[..],
        );
        assert_eq!(goaway.goaway(), Ok((7, 2, Bytes::from_static(b"bye"))));

        let ping = Frame::new(kind::PING, 0, 0, &b"12345678"[..]);
        let ack = ping.ping_ack();
        assert!(ack.has(flag::ACK));
        assert_eq!(ack.payload, ping.payload);
    }

    #[test]
    fn large_header_block_is_continued() {
        let frames = Frame::headers(1, Bytes::from(vec![1; 40_000]), true, 16_384);

        let kinds: Vec<_> = frames
            .iter()
            .map(|f| (f.kind, f.flags, f.payload.len()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (kind::HEADERS, flag::END_STREAM, 16_384),
                (kind::CONTINUATION, 0, 16_384),
                (kind::CONTINUATION, flag::END_HEADERS, 7_232),
            ]
        );
        let single = Frame::headers(3, Bytes::from_static(b"x"), false, 16_384);
        assert_eq!(single[0].flags, flag::END_HEADERS);
    }
}
