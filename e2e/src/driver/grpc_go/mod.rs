//! A raw HTTP/2 gRPC client that calls the provider exactly as drivers up to v1.5 do.
//!
//! Those drivers use grpc-go, which sends the unix socket's *path* as `:authority`. No Rust
//! HTTP/2 client can be made to send that (the value is not a valid authority), so this module
//! writes the frames itself: the preface, an empty SETTINGS, then per call a HEADERS block in
//! grpc-go's field order (HPACK-indexed the way Go indexes) and one DATA frame with the
//! length-prefixed message and END_STREAM. It reads the response HEADERS, DATA and trailers,
//! answers SETTINGS and PING, grants flow-control credit, and turns RST_STREAM, GOAWAY and a
//! closed connection into the gRPC codes grpc-go reports.
//!
//! Several calls may share one connection ([`GrpcGoConnection::unary_concurrent`]): the driver
//! multiplexes every pod's Mount over a single connection per node.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tonic::Code;

use super::frame::{self, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, Frame, flag, kind, setting};
use super::hpack_enc::{DEFAULT_TABLE_SIZE, HpackEncoder};
use super::pb;

/// The `user-agent` the driver's grpc-go sends (a v1.5-era grpc-go release).
pub const GRPC_GO_USER_AGENT: &str = "grpc-go/1.67.1";

/// The HTTP/2 path of `Mount`.
pub const MOUNT_PATH: &str = "/v1alpha1.CSIDriverProvider/Mount";

/// The HTTP/2 path of `Version`.
pub const VERSION_PATH: &str = "/v1alpha1.CSIDriverProvider/Version";

/// How long a call without a deadline (a v1.5 rotation Mount) may take before this client gives
/// up on its own; nothing is sent to the server about it.
pub const NO_DEADLINE_BOUND: Duration = Duration::from_secs(60);

/// The deadline of the one-shot helpers, sent as `grpc-timeout` as kubelet's CSI deadline is.
const HELPER_DEADLINE: Duration = Duration::from_secs(30);

/// The largest response message accepted: the driver's default `--max-call-recv-msg-size`.
const MAX_RECV_MESSAGE: usize = 4 * 1024 * 1024;

/// A failed call: the gRPC code and the (percent-decoded) message, as grpc-go reports them.
pub type CallError = (Code, String);

/// One HTTP/2 connection to the provider, speaking like grpc-go.
pub struct GrpcGoConnection {
    io: UnixStream,
    authority: String,
    read_buf: BytesMut,
    /// Frames queued for the next flush.
    out: BytesMut,
    encoder: HpackEncoder,
    decoder: hpack::Decoder<'static>,
    /// A header block arriving in CONTINUATION frames: stream, bytes so far, END_STREAM.
    partial_block: Option<(u32, BytesMut, bool)>,
    next_stream: u32,
    peer_max_frame: u32,
    peer_initial_window: i64,
    send_window: i64,
    /// Why the connection can carry no more calls (GOAWAY, a transport error).
    closed: Option<String>,
}

impl std::fmt::Debug for GrpcGoConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcGoConnection")
            .field("authority", &self.authority)
            .field("next_stream", &self.next_stream)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The state of one call on the connection.
#[derive(Default)]
struct Call {
    id: u32,
    /// Request bytes not yet sent.
    pending: Bytes,
    send_window: i64,
    headers: Option<Vec<(String, String)>>,
    trailers: Option<Vec<(String, String)>>,
    data: BytesMut,
    /// Set when the call ended without a normal end of stream.
    failure: Option<CallError>,
    done: bool,
}

impl Call {
    fn fail(&mut self, code: Code, message: impl Into<String>) {
        if !self.done {
            self.failure = Some((code, message.into()));
            self.done = true;
        }
    }
}

impl GrpcGoConnection {
    /// Connects to `socket` and sends the preface, using the socket's path as `:authority`,
    /// as grpc-go in drivers up to v1.5 does.
    pub async fn connect(socket: &Path) -> io::Result<GrpcGoConnection> {
        let authority = socket.to_string_lossy().into_owned();
        Self::connect_with_authority(socket, &authority).await
    }

    /// Connects to `socket` and sends the preface; every request carries `authority`.
    pub async fn connect_with_authority(
        socket: &Path,
        authority: &str,
    ) -> io::Result<GrpcGoConnection> {
        let io = UnixStream::connect(socket).await?;
        let mut conn = GrpcGoConnection {
            io,
            authority: authority.to_owned(),
            read_buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
            encoder: HpackEncoder::new(),
            decoder: hpack::Decoder::new(),
            partial_block: None,
            next_stream: 1,
            peer_max_frame: DEFAULT_MAX_FRAME_SIZE,
            peer_initial_window: i64::from(DEFAULT_WINDOW),
            send_window: i64::from(DEFAULT_WINDOW),
            closed: None,
        };

        // grpc-go writes the preface and an empty SETTINGS frame (it keeps every default), then
        // its requests, without waiting for the server's SETTINGS.
        conn.out.extend_from_slice(frame::PREFACE);
        Frame::settings(&[]).encode(&mut conn.out);
        conn.flush().await?;
        Ok(conn)
    }

    /// One unary call to `method` (for example [`MOUNT_PATH`]).
    ///
    /// With a `deadline`, `grpc-timeout` is sent and the call fails with `DEADLINE_EXCEEDED`
    /// when it passes (the stream is then reset with CANCEL, as grpc-go does). Without one,
    /// nothing is sent and the client still gives up after [`NO_DEADLINE_BOUND`].
    pub async fn unary<Req, Resp>(
        &mut self,
        method: &str,
        request: &Req,
        deadline: Option<Duration>,
    ) -> Result<Resp, CallError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let mut results = self
            .unary_concurrent(method, std::slice::from_ref(request), deadline)
            .await;
        results.pop().expect("one result per request")
    }

    /// Several unary calls at once, each on its own stream of this connection: every request
    /// is sent before any response is read. Results come back in request order.
    pub async fn unary_concurrent<Req, Resp>(
        &mut self,
        method: &str,
        requests: &[Req],
        deadline: Option<Duration>,
    ) -> Vec<Result<Resp, CallError>>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let give_up = Instant::now() + deadline.unwrap_or(NO_DEADLINE_BOUND);
        let mut calls: Vec<Call> = requests
            .iter()
            .map(|request| self.open_stream(method, request, deadline))
            .collect();

        if let Err(e) = self.drive(&mut calls, give_up).await {
            let message = format!("connection error: desc = \"transport: {e}\"");
            self.closed.get_or_insert(message.clone());
            for call in &mut calls {
                call.fail(Code::Unavailable, message.clone());
            }
        }

        calls.into_iter().map(into_result).collect()
    }

    /// Allocates a stream and queues its HEADERS; the body goes out as flow control allows.
    fn open_stream<Req: prost::Message>(
        &mut self,
        method: &str,
        request: &Req,
        deadline: Option<Duration>,
    ) -> Call {
        let mut call = Call {
            id: self.next_stream,
            send_window: self.peer_initial_window,
            ..Call::default()
        };
        if let Some(reason) = &self.closed {
            call.fail(Code::Unavailable, reason.clone());
            return call;
        }
        self.next_stream += 2;

        // grpc-go's order: pseudo-headers, content-type, user-agent, te, then grpc-timeout.
        let timeout = deadline.map(encode_grpc_timeout);
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", self.authority.as_str()),
            ("content-type", "application/grpc"),
            ("user-agent", GRPC_GO_USER_AGENT),
            ("te", "trailers"),
        ];
        if let Some(timeout) = &timeout {
            fields.push(("grpc-timeout", timeout.as_str()));
        }

        // The block is queued at once: HPACK state has changed, so it must go out in order.
        let block = Bytes::from(self.encoder.encode(&fields));
        for frame in Frame::headers(call.id, block, false, self.peer_max_frame) {
            frame.encode(&mut self.out);
        }
        call.pending = grpc_message(&request.encode_to_vec());
        call
    }

    /// Sends, reads and answers frames until every call is done or `give_up` passes.
    async fn drive(&mut self, calls: &mut [Call], give_up: Instant) -> io::Result<()> {
        // Like grpc-go's separate reader and writer, a failed write does not stop the reading:
        // a response already on its way is still delivered.
        let mut write_error = None;
        loop {
            self.queue_data(calls);
            if let Err(e) = self.flush().await {
                self.out.clear();
                write_error.get_or_insert(e);
            }
            if calls.iter().all(|c| c.done) {
                return Ok(());
            }

            let frame = match tokio::time::timeout_at(give_up, self.read_frame()).await {
                Ok(frame) => frame?,
                Err(_) => {
                    for call in calls.iter_mut().filter(|c| !c.done) {
                        call.fail(Code::DeadlineExceeded, "context deadline exceeded");
                        Frame::rst_stream(call.id, 0x8).encode(&mut self.out);
                    }
                    let _ = self.flush().await;
                    return Ok(());
                }
            };
            match frame {
                Some(frame) => self.handle(frame, calls)?,
                None => {
                    let eof = || io::Error::other("error reading from server: EOF");
                    return Err(write_error.unwrap_or_else(eof));
                }
            }
        }
    }

    /// Queues as much request DATA as the connection's and the streams' windows allow.
    fn queue_data(&mut self, calls: &mut [Call]) {
        for call in calls.iter_mut().filter(|c| !c.done) {
            while !call.pending.is_empty() {
                let n = (call.pending.len() as i64)
                    .min(call.send_window)
                    .min(self.send_window)
                    .min(i64::from(self.peer_max_frame));
                if n <= 0 {
                    break;
                }
                let chunk = call.pending.split_to(n as usize);
                let flags = if call.pending.is_empty() {
                    flag::END_STREAM
                } else {
                    0
                };
                Frame::new(kind::DATA, flags, call.id, chunk).encode(&mut self.out);
                call.send_window -= n;
                self.send_window -= n;
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next frame, or `None` at end of stream. Cancel-safe: bytes read stay buffered.
    async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match Frame::decode(&mut self.read_buf, DEFAULT_MAX_FRAME_SIZE) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.io.read_buf(&mut self.read_buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Applies one frame from the server to the connection and its calls.
    fn handle(&mut self, frame: Frame, calls: &mut [Call]) -> io::Result<()> {
        let invalid = |e: frame::FrameError| io::Error::new(io::ErrorKind::InvalidData, e);
        if self.partial_block.is_some() && frame.kind != kind::CONTINUATION {
            return Err(io::Error::other("expected CONTINUATION"));
        }
        let call = calls.iter_mut().find(|c| c.id == frame.stream && !c.done);

        match frame.kind {
            kind::HEADERS => {
                let block = BytesMut::from(&frame.body().map_err(invalid)?[..]);
                let end_stream = frame.has(flag::END_STREAM);
                self.partial_block = Some((frame.stream, block, end_stream));
                if frame.has(flag::END_HEADERS) {
                    self.finish_block(calls)?;
                }
            }
            kind::CONTINUATION => {
                let Some((stream, block, _)) = &mut self.partial_block else {
                    return Err(io::Error::other("CONTINUATION without HEADERS"));
                };
                if *stream != frame.stream {
                    return Err(io::Error::other("CONTINUATION on another stream"));
                }
                block.extend_from_slice(&frame.payload);
                if frame.has(flag::END_HEADERS) {
                    self.finish_block(calls)?;
                }
            }
            kind::DATA => {
                let body = frame.body().map_err(invalid)?;
                let len = frame.payload.len() as u32;
                let end_stream = frame.has(flag::END_STREAM);
                if len > 0 {
                    // Give the credit back at once: the data is buffered, not held by the peer.
                    Frame::window_update(0, len).encode(&mut self.out);
                }
                if let Some(call) = call {
                    call.data.extend_from_slice(&body);
                    if call.data.len() > MAX_RECV_MESSAGE + 5 {
                        let message = format!(
                            "grpc: received message larger than max ({} vs. {MAX_RECV_MESSAGE})",
                            call.data.len() - 5
                        );
                        call.fail(Code::ResourceExhausted, message);
                        Frame::rst_stream(call.id, 0x8).encode(&mut self.out);
                    } else if end_stream {
                        call.done = true;
                    } else if len > 0 {
                        Frame::window_update(call.id, len).encode(&mut self.out);
                    }
                }
            }
            kind::RST_STREAM => {
                let code = frame.error_code().map_err(invalid)?;
                if let Some(call) = call {
                    let message = format!(
                        "stream terminated by RST_STREAM with error code: {}",
                        frame::error_name(code)
                    );
                    call.fail(rst_code(code), message);
                }
            }
            kind::SETTINGS if !frame.has(flag::ACK) => {
                for (id, value) in frame.settings_values().map_err(invalid)? {
                    self.apply_setting(id, value, calls);
                }
                Frame::new(kind::SETTINGS, flag::ACK, 0, Bytes::new()).encode(&mut self.out);
            }
            kind::PING if !frame.has(flag::ACK) => frame.ping_ack().encode(&mut self.out),
            kind::WINDOW_UPDATE => {
                let increment = i64::from(frame.window_increment().map_err(invalid)?);
                if frame.stream == 0 {
                    self.send_window += increment;
                } else if let Some(call) = call {
                    call.send_window += increment;
                }
            }
            kind::GOAWAY => {
                let (last, code, debug) = frame.goaway().map_err(invalid)?;
                let message = format!(
                    "received GOAWAY with error code {}, debug data {:?}",
                    frame::error_name(code),
                    String::from_utf8_lossy(&debug)
                );
                self.closed.get_or_insert(message.clone());
                for call in calls.iter_mut().filter(|c| c.id > last) {
                    call.fail(Code::Unavailable, message.clone());
                }
            }
            kind::PUSH_PROMISE => return Err(io::Error::other("unexpected PUSH_PROMISE")),
            // SETTINGS and PING acknowledgements, PRIORITY, unknown extension frames.
            _ => {}
        }
        Ok(())
    }

    /// Decodes a complete header block and hands it to its call as headers or trailers.
    fn finish_block(&mut self, calls: &mut [Call]) -> io::Result<()> {
        let (stream, block, end_stream) = self.partial_block.take().expect("a block in progress");

        // Decode even when the call is gone: the HPACK table must stay in step with the server.
        let fields: Vec<(String, String)> = self
            .decoder
            .decode(&block)
            .map_err(|e| io::Error::other(format!("HPACK decoding failed: {e:?}")))?
            .into_iter()
            .map(|(n, v)| {
                let n = String::from_utf8_lossy(&n).into_owned();
                (n, String::from_utf8_lossy(&v).into_owned())
            })
            .collect();

        if let Some(call) = calls.iter_mut().find(|c| c.id == stream && !c.done) {
            if call.headers.is_none() {
                call.headers = Some(fields);
            } else {
                call.trailers = Some(fields);
            }
            call.done = end_stream;
        }
        Ok(())
    }

    fn apply_setting(&mut self, id: u16, value: u32, calls: &mut [Call]) {
        match id {
            setting::INITIAL_WINDOW_SIZE => {
                let delta = i64::from(value) - self.peer_initial_window;
                self.peer_initial_window = i64::from(value);
                for call in calls.iter_mut() {
                    call.send_window += delta;
                }
            }
            setting::MAX_FRAME_SIZE => self.peer_max_frame = value,
            setting::HEADER_TABLE_SIZE => {
                let size = usize::try_from(value).unwrap_or(usize::MAX);
                self.encoder
                    .set_max_table_size(size.min(DEFAULT_TABLE_SIZE));
            }
            _ => {}
        }
    }
}

/// The call's outcome, read as grpc-go reads it.
fn into_result<Resp: prost::Message + Default>(call: Call) -> Result<Resp, CallError> {
    if let Some(failure) = call.failure {
        return Err(failure);
    }
    let Some(headers) = call.headers else {
        return Err((
            Code::Internal,
            "stream ended without response headers".into(),
        ));
    };

    // A "Trailers-Only" response carries the status in its only header block.
    let status_fields = call.trailers.as_ref().unwrap_or(&headers);
    let http_status = field(&headers, ":status").unwrap_or("");
    match field(status_fields, "grpc-status") {
        Some("0") => {}
        Some(code) => {
            let code = code.parse().map(Code::from_i32).unwrap_or(Code::Unknown);
            let message = field(status_fields, "grpc-message").unwrap_or("");
            let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
            return Err((code, message.into_owned()));
        }
        None if http_status != "200" => {
            let message =
                format!("unexpected HTTP status code received from server: {http_status}");
            return Err((http_code(http_status), message));
        }
        None => {
            return Err((
                Code::Internal,
                "server closed the stream without trailers".into(),
            ));
        }
    }

    let content_type = field(&headers, "content-type").unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        let message = format!("transport: received unexpected content-type {content_type:?}");
        return Err((Code::Internal, message));
    }
    let message = single_message(call.data.freeze())?;
    Resp::decode(message).map_err(|e| {
        let message = format!("grpc: failed to unmarshal the received message: {e}");
        (Code::Internal, message)
    })
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The one message of a unary response body.
fn single_message(mut data: Bytes) -> Result<Bytes, CallError> {
    let internal = |m: &str| (Code::Internal, m.to_owned());
    if data.len() < 5 {
        return Err(internal("grpc: the server sent no response message"));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err(internal("grpc: compressed flag set with identity encoding"));
    }
    if data.len() != len {
        return Err(internal("grpc: response body is not exactly one message"));
    }
    Ok(data)
}

/// A message with gRPC's 5-byte prefix: uncompressed flag and big-endian length.
fn grpc_message(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The gRPC code grpc-go gives a stream reset with an HTTP/2 error code.
fn rst_code(code: u32) -> Code {
    match code {
        0x7 => Code::Unavailable,       // REFUSED_STREAM
        0x8 => Code::Cancelled,         // CANCEL
        0xb => Code::ResourceExhausted, // ENHANCE_YOUR_CALM
        0xc => Code::PermissionDenied,  // INADEQUATE_SECURITY
        _ => Code::Internal,
    }
}

/// The gRPC code grpc-go gives a non-gRPC HTTP response.
fn http_code(status: &str) -> Code {
    match status {
        "400" => Code::Internal,
        "401" => Code::Unauthenticated,
        "403" => Code::PermissionDenied,
        "404" => Code::Unimplemented,
        "429" | "502" | "503" | "504" => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// `grpc-timeout` as grpc-go writes it: the finest unit whose value, rounded up, fits in
/// 8 digits.
pub fn encode_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    if nanos == 0 {
        return "0n".to_owned();
    }
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (size, unit) in units {
        let value = nanos.div_ceil(size);
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Calls `Mount` on a fresh connection exactly as a v1.5 driver does: socket path as
/// `:authority`, a 30-second `grpc-timeout`.
pub async fn mount_with_path_authority(
    socket: &Path,
    request: pb::MountRequest,
) -> Result<pb::MountResponse, CallError> {
    call_once(socket, MOUNT_PATH, &request).await
}

/// Calls `Version` on a fresh connection exactly as a v1.5 driver does.
pub async fn version_with_path_authority(
    socket: &Path,
    request: pb::VersionRequest,
) -> Result<pb::VersionResponse, CallError> {
    call_once(socket, VERSION_PATH, &request).await
}

async fn call_once<Req, Resp>(socket: &Path, method: &str, request: &Req) -> Result<Resp, CallError>
where
    Req: prost::Message,
    Resp: prost::Message + Default,
{
    let mut conn = GrpcGoConnection::connect(socket).await.map_err(|e| {
        let message = format!(
            "connection error: desc = \"transport: Error while dialing: dial unix {}: {e}\"",
            socket.display()
        );
        (Code::Unavailable, message)
    })?;
    conn.unary(method, request, Some(HELPER_DEADLINE)).await
}

#[cfg(test)]
mod tests;
