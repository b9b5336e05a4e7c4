//! The fronts' limits against clients that misbehave, over real sockets on 127.0.0.1: a head
//! or a body that never ends, an idle keep-alive connection, more connections than allowed, an
//! answer nobody reads, a large answer read slowly (never cut by the keep-alive clock), a
//! client still connected at shutdown, a gRPC client stalled in its connection preface, an
//! idle gRPC connection, a gRPC call past its `grpc-timeout`, more gRPC streams than allowed,
//! and health probes while thousands of slow clients and huge JSON bodies are in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use thrum_serve::{Limits, Listen, PoolConfig};

fn listen(limits: Limits) -> Listen {
    Listen { limits, ..quick() }
}

fn short(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    f(&mut limits);
    limits
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads until the server closes the connection (or 30 s pass); returns what came and how long
/// it took.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (out, start.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the server kept the connection open");
    }
}

const LIVE: &[u8] = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_client_that_never_finishes_its_head_is_disconnected() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.header_timeout = Duration::from_millis(300))),
    );
    let mut s = connect(server.http);
    s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n").unwrap();
    let (answer, took) = read_to_close(&mut s);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // A connection that sends nothing at all is cut by the same clock.
    let mut silent = connect(server.http);
    let (_, took) = read_to_close(&mut silent);
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[test]
fn a_grpc_client_that_never_finishes_its_connection_preface_is_disconnected() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.header_timeout = Duration::from_millis(300))),
    );
    // One byte, then most of the 24-byte preface: neither is the whole of it.
    for sent in [&b"P"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n"] {
        let start = Instant::now();
        let mut s = connect(server.grpc.unwrap());
        s.write_all(sent).unwrap();
        read_to_close(&mut s);
        let took = start.elapsed();
        // Closed by the server's clock, not held until the client's read timeout (30 s).
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(10),
            "closed after {took:?}"
        );
    }
}

#[test]
fn a_client_that_never_finishes_its_body_gets_408_and_is_disconnected() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.body_timeout = Duration::from_millis(300))),
    );
    let mut s = connect(server.http);
    // The issue's attack: headers and one byte of a 1,000-byte body, then nothing.
    s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    let (answer, _) = read_to_close(&mut s);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    assert_eq!(probe.calls(), 1, "only the warm-up ran");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.keep_alive_timeout = Duration::from_millis(400))),
    );
    // Busy: a request every 100 ms for 1.2 s, three times the idle limit, on one connection.
    let mut busy = connect(server.http);
    for _ in 0..12 {
        busy.write_all(LIVE).unwrap();
        let mut buf = [0u8; 1024];
        let n = busy.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle after its answer: closed once the limit passes.
    let mut idle = connect(server.http);
    idle.write_all(LIVE).unwrap();
    let start = Instant::now();
    let (answer, _) = read_to_close(&mut idle);
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let took = start.elapsed();
    eprintln!("idle connection closed after {took:?}");
    // Well before the header timeout (30 s), which would also end it.
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
}

#[test]
fn beyond_the_connection_limit_new_connections_wait_until_one_closes() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.max_connections = 2)),
    );
    let mut first = connect(server.http);
    first.write_all(LIVE).unwrap();
    let mut buf = [0u8; 1024];
    assert!(first.read(&mut buf).unwrap() > 0);
    let _second = connect(server.http);
    // The third is in the backlog: connected, but nobody reads its request yet.
    let mut third = connect(server.http);
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    third.write_all(LIVE).unwrap();
    assert!(third.read(&mut buf).is_err(), "answered beyond the limit");
    drop(first);
    let start = Instant::now();
    third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let n = third.read(&mut buf).unwrap();
    eprintln!("the waiting connection was answered {:?} after one closed", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "it waited for a timeout, not for the close"
    );
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
}

/// Sends model `m` a request of `rows` × 2 zeros in binary tensor data, its output asked in
/// binary too (as many bytes back as went in); returns the connection, unread.
fn send_binary_request(addr: SocketAddr, rows: usize) -> TcpStream {
    let header = serde_json::json!({
        "inputs": [{"name": "x", "shape": [rows, 2], "datatype": "FP32",
                    "parameters": {"binary_data_size": rows * 8}}],
        "parameters": {"binary_data_output": true}
    })
    .to_string();
    let mut s = connect(addr);
    let head = format!(
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n",
        header.len(),
        header.len() + rows * 8
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(header.as_bytes()).unwrap();
    s.write_all(&vec![0u8; rows * 8]).unwrap();
    s
}

#[test]
fn a_client_that_does_not_read_its_answer_is_disconnected() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.write_timeout = Duration::from_millis(500))),
    );
    // 32 MiB in, 32 MiB of outputs back: far more than the sockets' buffers hold.
    let rows = 4 << 20;
    let mut s = send_binary_request(server.http, rows);
    // Not reading: the server's write waits on us until the write timeout closes it.
    wait_until("the answer is computed", || probe.calls() >= 2);
    std::thread::sleep(Duration::from_millis(2500));
    let (answer, _) = read_to_close(&mut s);
    assert!(answer.len() < rows * 8, "the whole answer came: {} bytes", answer.len());
}

#[test]
fn a_large_answer_read_slowly_is_not_cut_by_the_keep_alive_timeout() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.keep_alive_timeout = Duration::from_millis(300))),
    );
    // 4 MiB of outputs, read 64 KiB every 25 ms: ~1.6 s of writing, five keep-alive timeouts.
    let rows = 1 << 19;
    let mut s = send_binary_request(server.http, rows);
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last_byte = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        last_byte = Instant::now();
        std::thread::sleep(Duration::from_millis(25));
    }
    let idle = last_byte.elapsed();
    let text = String::from_utf8_lossy(&answer[..200.min(answer.len())]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let length: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert_eq!(answer.len() - head_end, length, "the answer was cut");
    assert!(length > rows * 8, "{length}");
    // Idle after the last byte: closed by the keep-alive clock (not the client's 30 s read
    // timeout).
    assert!(idle < Duration::from_secs(10), "closed {idle:?} after the last byte");
}

#[test]
fn shutdown_cuts_a_stuck_client_after_the_shutdown_timeout() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.shutdown_timeout = Duration::from_millis(500))),
    );
    // Mid-body, with the body timeout (60 s) far away.
    let mut s = connect(server.http);
    s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.stop().unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown waited {took:?} for a stuck client");
    let (_, _) = read_to_close(&mut s);
}

#[test]
fn grpc_calls_beyond_the_stream_limit_wait_for_a_free_stream() {
    use thrum_serve::pb;
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(4))],
        listen(short(|l| l.max_streams_per_connection = 2)),
    );
    let _closed = probe.gate.closed();
    let grpc = server.grpc.unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let calls = probe.calls();
    let handles = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // One call first: by its answer the client has the server's SETTINGS (the stream
        // limit). A call sent before them may be refused with REFUSED_STREAM, HTTP/2's
        // retryable refusal, rather than wait.
        pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel.clone())
            .server_live(pb::ServerLiveRequest {})
            .await
            .unwrap();
        (0..3)
            .map(|_| {
                let mut client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(
                    channel.clone(),
                );
                tokio::spawn(async move {
                    let request = pb::ModelInferRequest {
                        model_name: "m".into(),
                        inputs: vec![pb::model_infer_request::InferInputTensor {
                            name: "x".into(),
                            datatype: "FP32".into(),
                            shape: vec![1, 2],
                            ..Default::default()
                        }],
                        raw_input_contents: vec![bytes::Bytes::from(vec![0u8; 8])],
                        ..Default::default()
                    };
                    client.model_infer(request).await.map(|_| ())
                })
            })
            .collect::<Vec<_>>()
    });
    // Four workers are free, but one connection may carry two calls at once.
    wait_until("two calls run", || probe.calls() == calls + 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(probe.calls(), calls + 2, "a third stream ran beyond the limit");
    probe.gate.open();
    for h in handles {
        rt.block_on(h).unwrap().unwrap();
    }
    assert_eq!(probe.calls(), calls + 3);
}

/// A raw HTTP/2 client connection to the gRPC front (to watch the connection itself, which a
/// gRPC client library hides by reconnecting), and the task driving it: it finishes when the
/// server closes the connection.
async fn h2_connect(
    addr: SocketAddr,
) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(connection))
}

/// Starts a gRPC call of `method` with `message` (protobuf bytes) and these extra headers;
/// `end`: whether the request's stream ends with the message.
async fn h2_call(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    method: &str,
    message: &[u8],
    headers: &[(&str, &str)],
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let mut request =
        hyper::Request::post(format!("http://t/inference.GRPCInferenceService/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let client = client.clone().ready().await.unwrap();
    let mut client = client;
    let (response, mut send) = client.send_request(request.body(()).unwrap(), false).unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    send.send_data(framed.into(), end).unwrap();
    (response, send)
}

/// A call's `grpc-status` (from the trailers, or the headers of a trailers-only answer).
async fn grpc_status(response: h2::client::ResponseFuture) -> String {
    let response = response.await.unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_string();
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("no trailers");
    trailers.get("grpc-status").expect("no grpc-status").to_str().unwrap().to_string()
}

#[test]
fn an_idle_grpc_connection_gets_goaway_and_a_busy_one_does_not() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model.clone(), PoolConfig::new(1))],
        listen(short(|l| l.keep_alive_timeout = Duration::from_secs(1))),
    );
    let grpc = server.grpc.unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut client, mut connection) = h2_connect(grpc).await;
        // Busy: a call every 100 ms for 2.5 s, two and a half times the idle limit.
        for _ in 0..25 {
            let (response, _) = h2_call(&mut client, "ServerLive", &[], &[], true).await;
            assert_eq!(grpc_status(response).await, "0");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!connection.is_finished(), "a connection in use was closed");
        }
        // A call left open (a stream whose client has sent nothing yet) holds it as long.
        let (response, mut send) = h2_call(&mut client, "ModelStreamInfer", &[], &[], false).await;
        let open = tokio::spawn(grpc_status(response));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!connection.is_finished(), "a connection with a call open was closed");
        // The call ends; the connection, now idle, gets GOAWAY once the limit passes.
        send.send_data(bytes::Bytes::new(), true).unwrap();
        assert_eq!(open.await.unwrap(), "0");
        let start = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut connection)
            .await
            .expect("an idle gRPC connection was kept open");
        let took = start.elapsed();
        eprintln!("idle gRPC connection closed after {took:?}: {ended:?}");
        // A clean close (GOAWAY, then the end of the connection), not a reset.
        ended.unwrap().unwrap();
        assert!(took >= Duration::from_millis(900), "closed after {took:?}");
        // A new connection is served as before.
        let (mut client, _connection) = h2_connect(grpc).await;
        let (response, _) = h2_call(&mut client, "ServerLive", &[], &[], true).await;
        assert_eq!(grpc_status(response).await, "0");
    });
}

#[test]
fn a_grpc_call_past_its_grpc_timeout_is_deadline_exceeded() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(vec![("m", probe.model.clone(), PoolConfig::new(1))], quick());
    let grpc = server.grpc.unwrap();
    let calls = probe.calls();
    let closed = probe.gate.closed();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut client, _connection) = h2_connect(grpc).await;
        // ModelInferRequest { model_name: "m", inputs: [{ name: "x", datatype: "FP32",
        // shape: [1, 2] }], raw_input_contents: [8 zero bytes] }, encoded by hand.
        let tensor = [&[0x0a, 1, b'x', 0x12, 4][..], b"FP32", &[0x1a, 2, 1, 2]].concat();
        let message = [
            &[0x0a, 1, b'm', 0x2a, u8::try_from(tensor.len()).unwrap()][..],
            &tensor,
            &[0x3a, 8],
            &[0; 8],
        ]
        .concat();
        let start = Instant::now();
        let (response, _) =
            h2_call(&mut client, "ModelInfer", &message, &[("grpc-timeout", "300m")], true).await;
        // 4: DEADLINE_EXCEEDED, while the model is held at its gate.
        assert_eq!(grpc_status(response).await, "4");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(10), "{took:?}");
        // A malformed header is ignored (tonic's and grpc-go's behaviour): the call waits.
        let (response, _) =
            h2_call(&mut client, "ModelInfer", &message, &[("grpc-timeout", "300x")], true).await;
        let answer = tokio::spawn(grpc_status(response));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!answer.is_finished(), "a call with a malformed grpc-timeout was cut");
        drop(closed);
        assert_eq!(answer.await.unwrap(), "0");
    });
    assert!(probe.calls() > calls);
}

#[test]
fn liveness_answers_fast_while_slow_clients_and_huge_json_bodies_are_in_flight() {
    let probe = scripted(Duration::ZERO);
    let server = serve_with(
        vec![("m", probe.model, PoolConfig::new(1).with_queue_capacity(8))],
        listen(Limits::default()),
    );
    // 3,000 clients stalled in their body (the issue's attack).
    let mut slow = Vec::new();
    for _ in 0..3000 {
        let mut s = TcpStream::connect(server.http).unwrap();
        s.write_all(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{",
        )
        .unwrap();
        slow.push(s);
    }
    // Three 60 MiB JSON bodies: 15 M numbers each to parse, and as many to encode back.
    let rows = 7_500_000usize;
    let data = "0.5,".repeat(rows * 2);
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[{rows},2],"datatype":"FP32","data":[{}]}}]}}"#,
        &data[..data.len() - 1]
    );
    assert!(body.len() > 55 << 20 && body.len() < 64 << 20);
    let heavy: Vec<_> = (0..3)
        .map(|_| {
            let (addr, body) = (server.http, body.clone());
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let head = format!(
                    "POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body.as_bytes()).unwrap();
                let mut status = [0u8; 12];
                s.read_exact(&mut status).unwrap();
                status
            })
        })
        .collect();
    let mut latencies = Vec::new();
    while !heavy.iter().all(std::thread::JoinHandle::is_finished) && latencies.len() < 200 {
        let start = Instant::now();
        let mut s = connect(server.http);
        s.write_all(LIVE).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        latencies.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in heavy {
        assert_eq!(&h.join().unwrap(), b"HTTP/1.1 200");
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = *latencies.last().unwrap();
    eprintln!("{} probes: median {median:?}, worst {worst:?}", latencies.len());
    assert!(latencies.len() >= 5, "too few probes while the bodies were parsed");
    // A parse or an encoding on an async thread holds it for the whole body: probes then
    // waited up to 5 s here (20 ms at most without). The bound leaves room for a busy CI
    // machine; docs/performance.md has the measured figures against the 100 ms goal.
    assert!(worst < Duration::from_secs(1), "a probe waited {worst:?} (median {median:?})");
    drop(slow);
}
