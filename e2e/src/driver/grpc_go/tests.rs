//! Unit tests of the grpc-go double: pure parts, and whole calls against a scripted server.

use super::*;

#[test]
fn grpc_timeout_matches_grpc_go() {
    assert_eq!(encode_grpc_timeout(Duration::ZERO), "0n");
    assert_eq!(encode_grpc_timeout(Duration::from_nanos(1500)), "1500n");
    assert_eq!(encode_grpc_timeout(Duration::from_millis(100)), "100000u");
    assert_eq!(encode_grpc_timeout(Duration::from_secs(30)), "30000000u");
    assert_eq!(encode_grpc_timeout(Duration::from_secs(120)), "120000m");
    assert_eq!(
        encode_grpc_timeout(Duration::from_nanos(119_999_999_001)),
        "120000m"
    );
    assert_eq!(encode_grpc_timeout(Duration::from_secs(200_000)), "200000S");
}

#[test]
fn message_prefix_round_trips() {
    let framed = grpc_message(b"hello");
    assert_eq!(&framed[..], b"\x00\x00\x00\x00\x05hello");
    assert_eq!(single_message(framed), Ok(Bytes::from_static(b"hello")));
    assert!(single_message(Bytes::from_static(b"\x01\x00\x00\x00\x00")).is_err());
    assert!(single_message(Bytes::from_static(b"\x00\x00\x00\x00\x09hi")).is_err());
    assert!(single_message(Bytes::new()).is_err());
}

fn response(headers: &[(&str, &str)], trailers: Option<&[(&str, &str)]>, data: &[u8]) -> Call {
    let owned = |f: &[(&str, &str)]| {
        f.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    Call {
        headers: Some(owned(headers)),
        trailers: trailers.map(owned),
        data: BytesMut::from(data),
        done: true,
        ..Call::default()
    }
}

const OK_HEADERS: [(&str, &str); 2] = [(":status", "200"), ("content-type", "application/grpc")];

#[test]
fn ok_response_is_decoded() {
    let body = pb::VersionResponse {
        version: "v1alpha1".into(),
        runtime_name: "x".into(),
        runtime_version: "1.0.0".into(),
    };
    let data = grpc_message(&prost::Message::encode_to_vec(&body));
    let call = response(&OK_HEADERS, Some(&[("grpc-status", "0")]), &data);

    assert_eq!(into_result::<pb::VersionResponse>(call), Ok(body));
}

#[test]
fn error_status_and_message_are_decoded() {
    let trailers = [
        ("grpc-status", "3"),
        ("grpc-message", "objects%3A is empty %E2%9C%93"),
    ];
    let call = response(&OK_HEADERS, Some(&trailers), b"");

    assert_eq!(
        into_result::<pb::MountResponse>(call),
        Err((Code::InvalidArgument, "objects: is empty ✓".to_owned()))
    );
}

#[test]
fn trailers_only_response_carries_the_status() {
    let headers = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "12"),
        ("grpc-message", "unknown method"),
    ];
    let call = response(&headers, None, b"");

    assert_eq!(
        into_result::<pb::MountResponse>(call),
        Err((Code::Unimplemented, "unknown method".to_owned()))
    );
}

#[test]
fn non_grpc_http_response_maps_like_grpc_go() {
    let call = response(&[(":status", "503")], None, b"");
    assert_eq!(
        into_result::<pb::MountResponse>(call).unwrap_err().0,
        Code::Unavailable
    );

    let call = response(&OK_HEADERS, None, b"");
    assert_eq!(
        into_result::<pb::MountResponse>(call).unwrap_err().0,
        Code::Internal
    );
}

#[test]
fn resets_map_like_grpc_go() {
    assert_eq!(rst_code(0x1), Code::Internal);
    assert_eq!(rst_code(0x7), Code::Unavailable);
    assert_eq!(rst_code(0x8), Code::Cancelled);
}

// ===== Whole calls against a scripted HTTP/2 server =====

use tokio::net::UnixListener;

/// The server end of one connection, driven frame by frame by a test.
struct Script {
    io: UnixStream,
    buf: BytesMut,
    decoder: hpack::Decoder<'static>,
    encoder: hpack::Encoder<'static>,
}

impl Script {
    async fn accept(listener: &UnixListener) -> Script {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        io.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface[..], frame::PREFACE);
        Script {
            io,
            buf: BytesMut::new(),
            decoder: hpack::Decoder::new(),
            encoder: hpack::Encoder::new(),
        }
    }

    async fn read(&mut self) -> Frame {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf, 1 << 20).unwrap() {
                return frame;
            }
            assert!(
                self.io.read_buf(&mut self.buf).await.unwrap() > 0,
                "client hung up"
            );
        }
    }

    /// The next frame that is not a SETTINGS, PING or WINDOW_UPDATE acknowledgement or credit.
    async fn read_call_frame(&mut self) -> Frame {
        loop {
            let frame = self.read().await;
            let control = matches!(
                frame.kind,
                kind::SETTINGS | kind::PING | kind::WINDOW_UPDATE
            );
            if !control {
                return frame;
            }
        }
    }

    async fn write(&mut self, frames: &[Frame]) {
        let mut out = BytesMut::new();
        for frame in frames {
            frame.encode(&mut out);
        }
        self.io.write_all(&out).await.unwrap();
    }

    fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        self.decoder
            .decode(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| {
                let n = String::from_utf8(n).unwrap();
                (n, String::from_utf8(v).unwrap())
            })
            .collect()
    }

    fn block(&mut self, fields: &[(&str, &str)], stream: u32, end_stream: bool) -> Frame {
        let fields: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let block = self.encoder.encode(fields);
        let mut flags = flag::END_HEADERS;
        if end_stream {
            flags |= flag::END_STREAM;
        }
        Frame::new(kind::HEADERS, flags, stream, block)
    }

    /// A successful unary response on `stream`.
    async fn answer(&mut self, stream: u32, message: &impl prost::Message) {
        let headers = self.block(
            &[(":status", "200"), ("content-type", "application/grpc")],
            stream,
            false,
        );
        let data = Frame::new(
            kind::DATA,
            0,
            stream,
            grpc_message(&message.encode_to_vec()),
        );
        let trailers = self.block(&[("grpc-status", "0")], stream, true);
        self.write(&[headers, data, trailers]).await;
    }
}

fn socket() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.sock");
    let listener = UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

fn version_response() -> pb::VersionResponse {
    pb::VersionResponse {
        version: "v1alpha1".into(),
        runtime_name: "fake".into(),
        runtime_version: "0.0.1".into(),
    }
}

#[tokio::test]
async fn request_is_sent_exactly_as_grpc_go_sends_it() {
    let (_dir, path, listener) = socket();
    let authority = path.to_string_lossy().into_owned();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;

        let settings = s.read().await;
        assert_eq!((settings.kind, settings.flags), (kind::SETTINGS, 0));
        assert!(settings.payload.is_empty(), "grpc-go keeps every default");
        s.write(&[
            Frame::settings(&[(setting::MAX_CONCURRENT_STREAMS, 100)]),
            Frame::new(kind::PING, 0, 0, &b"pingpong"[..]),
        ])
        .await;

        let headers = s.read_call_frame().await;
        assert_eq!(headers.kind, kind::HEADERS);
        assert_eq!(headers.stream, 1);
        assert_eq!(
            headers.flags,
            flag::END_HEADERS,
            "END_STREAM comes with the DATA"
        );
        let fields = s.decode(&headers.payload);
        let expected = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/v1alpha1.CSIDriverProvider/Version"),
            (":authority", authority.as_str()),
            ("content-type", "application/grpc"),
            ("user-agent", GRPC_GO_USER_AGENT),
            ("te", "trailers"),
        ];
        assert_eq!(fields.len(), 8, "{fields:?}");
        for (field, (name, value)) in fields.iter().zip(expected) {
            assert_eq!((field.0.as_str(), field.1.as_str()), (name, value));
        }
        assert_eq!(fields[7].0, "grpc-timeout");
        assert!(fields[7].1.ends_with('u'), "{:?}", fields[7]);

        let data = s.read_call_frame().await;
        assert_eq!(
            (data.kind, data.flags, data.stream),
            (kind::DATA, flag::END_STREAM, 1)
        );
        let request = single_message(data.payload).unwrap();
        assert_eq!(
            <pb::VersionRequest as prost::Message>::decode(request)
                .unwrap()
                .version,
            "v1alpha1"
        );
        s.answer(1, &version_response()).await;

        // What the client answered to our SETTINGS and PING along the way.
        let mut acks = Vec::new();
        while acks.len() < 2 {
            let frame = s.read().await;
            if frame.has(flag::ACK) {
                acks.push((frame.kind, frame.payload));
            }
        }
        assert!(acks.contains(&(kind::SETTINGS, Bytes::new())));
        assert!(acks.contains(&(kind::PING, Bytes::from_static(b"pingpong"))));
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    let request = pb::VersionRequest {
        version: "v1alpha1".into(),
    };
    let response: pb::VersionResponse = conn
        .unary(VERSION_PATH, &request, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(response, version_response());

    server.await.unwrap();
}

#[tokio::test]
async fn later_requests_send_the_authority_by_index() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        for stream in [1, 3] {
            let headers = s.read_call_frame().await;
            let fields = s.decode(&headers.payload);
            assert!(
                fields
                    .iter()
                    .any(|(n, v)| n == ":authority" && v.ends_with("azure.sock"))
            );
            let literal = headers.payload.windows(10).any(|w| w == b"azure.sock");
            assert_eq!(
                literal,
                stream == 1,
                "the path is literal only in the first block"
            );
            s.read_call_frame().await;
            s.answer(stream, &version_response()).await;
        }
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    for _ in 0..2 {
        let response: Result<pb::VersionResponse, _> = conn
            .unary(VERSION_PATH, &pb::VersionRequest::default(), None)
            .await;
        assert_eq!(response, Ok(version_response()));
    }
    server.await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_share_the_connection_and_keep_their_order() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        let mut streams = Vec::new();
        while streams.len() < 3 {
            let frame = s.read_call_frame().await;
            if frame.kind == kind::DATA {
                streams.push(frame.stream);
            }
        }
        assert_eq!(streams, vec![1, 3, 5]);

        // Answer out of order: the last stream first, the middle one with an error.
        s.answer(5, &version_response()).await;
        let trailers_only = s.block(
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "3"),
                ("grpc-message", "bad%20request"),
            ],
            3,
            true,
        );
        s.write(&[trailers_only]).await;
        s.answer(1, &version_response()).await;
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    let requests = vec![pb::VersionRequest::default(); 3];
    let results: Vec<Result<pb::VersionResponse, _>> =
        conn.unary_concurrent(VERSION_PATH, &requests, None).await;

    assert_eq!(results[0], Ok(version_response()));
    assert_eq!(
        results[1],
        Err((Code::InvalidArgument, "bad request".to_owned()))
    );
    assert_eq!(results[2], Ok(version_response()));
    server.await.unwrap();
}

#[tokio::test]
async fn reset_stream_is_reported_as_grpc_go_does() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        let headers = s.read_call_frame().await;
        s.write(&[Frame::rst_stream(headers.stream, 0x1)]).await;
    });

    let result = mount_with_path_authority(&path, pb::MountRequest::default()).await;
    assert_eq!(
        result,
        Err((
            Code::Internal,
            "stream terminated by RST_STREAM with error code: PROTOCOL_ERROR".to_owned()
        ))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn goaway_and_hang_up_are_unavailable() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        s.read_call_frame().await;
        s.write(&[Frame::new(
            kind::GOAWAY,
            0,
            0,
            &b"\x00\x00\x00\x00\x00\x00\x00\x00"[..],
        )])
        .await;
        let mut s = Script::accept(&listener).await;
        s.read_call_frame().await;
        drop(s);
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    let result = conn
        .unary::<_, pb::VersionResponse>(VERSION_PATH, &pb::VersionRequest::default(), None)
        .await;
    assert_eq!(result.unwrap_err().0, Code::Unavailable);
    let again = conn
        .unary::<_, pb::VersionResponse>(VERSION_PATH, &pb::VersionRequest::default(), None)
        .await;
    assert_eq!(
        again.unwrap_err().0,
        Code::Unavailable,
        "no new streams after GOAWAY"
    );

    let (code, message) = version_with_path_authority(&path, pb::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unavailable, "{message}");
    server.await.unwrap();
}

#[tokio::test]
async fn deadline_cancels_the_stream() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        s.read_call_frame().await;
        s.read_call_frame().await;
        let reset = s.read_call_frame().await;
        assert_eq!(
            (reset.kind, reset.error_code()),
            (kind::RST_STREAM, Ok(0x8))
        );
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    let result = conn
        .unary::<_, pb::VersionResponse>(
            VERSION_PATH,
            &pb::VersionRequest::default(),
            Some(Duration::from_millis(100)),
        )
        .await;
    assert_eq!(
        result,
        Err((
            Code::DeadlineExceeded,
            "context deadline exceeded".to_owned()
        ))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn large_request_waits_for_window_updates() {
    let (_dir, path, listener) = socket();
    let server = tokio::spawn(async move {
        let mut s = Script::accept(&listener).await;
        let mut received = 0usize;
        loop {
            let frame = s.read_call_frame().await;
            if frame.kind != kind::DATA {
                continue;
            }
            assert!(frame.payload.len() <= 16_384);
            received += frame.payload.len();
            if received == 65_535 {
                // The window is spent: nothing more may come until we grant credit.
                let early = tokio::time::timeout(Duration::from_millis(100), s.read()).await;
                assert!(early.is_err(), "client overran the window");
                s.write(&[
                    Frame::window_update(0, 200_000),
                    Frame::window_update(1, 200_000),
                ])
                .await;
            }
            if frame.has(flag::END_STREAM) {
                break;
            }
        }
        assert_eq!(received, 5 + 150_000 + 4);
        s.answer(1, &version_response()).await;
    });

    let mut conn = GrpcGoConnection::connect(&path).await.unwrap();
    let request = pb::VersionRequest {
        version: "x".repeat(150_000),
    };
    let result: Result<pb::VersionResponse, _> = conn.unary(VERSION_PATH, &request, None).await;
    assert_eq!(result, Ok(version_response()));
    server.await.unwrap();
}
