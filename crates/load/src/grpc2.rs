//! The load loop's gRPC client: one HTTP/2 connection per caller (the `h2` crate, nothing
//! above it), the `ModelInfer` message encoded once with its gRPC frame header, and an answer
//! read only for its `grpc-status`.
//!
//! tonic's client sends each call through a `tower` buffer (a channel and a task of its own)
//! and decodes every answer into a message; per call that cost three times what the HTTP/1.1
//! client costs (53 against 16 µs of CPU on zoo:mlp, docs/performance.md), so on a shared
//! machine the client, not the server, set gRPC's figure. Discovery and statistics still use
//! tonic's client: they are one-off calls.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::target::Outcome;

/// The path of the call every request makes.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A message with gRPC's length-prefixed framing: no compression, 4-byte big-endian length.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with room for the message cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// One caller's HTTP/2 connection.
pub struct GrpcConnection {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    /// The connection's task ended (the server closed it, or it broke).
    closed: tokio::sync::watch::Receiver<bool>,
}

impl GrpcConnection {
    /// Connects (10 s at most), with Nagle off, and completes HTTP/2's handshake.
    pub async fn connect(
        addr: std::net::SocketAddr,
        authority: &str,
    ) -> Result<GrpcConnection, String> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| "connecting timed out after 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (send, connection) =
            h2::client::handshake(stream).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = closed_tx.send(true);
        });
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(MODEL_INFER)
            .build()
            .map_err(|e| format!("the address `{authority}`: {e}"))?;
        Ok(GrpcConnection { send, uri, closed })
    }

    /// Sends `framed` (a [`frame`]d `ModelInferRequest`) and waits for the whole answer.
    pub async fn exchange(&mut self, framed: &Bytes) -> Result<Outcome, String> {
        if *self.closed.borrow() {
            return Ok(Outcome::Stale);
        }
        let mut send = self.send.clone().ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut body) = send.send_request(request, false).map_err(|e| e.to_string())?;
        body.send_data(framed.clone(), true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Ok(Outcome::Failed {
                status: format!("grpc-http:{}", response.status().as_u16()),
                retry_after: None,
            });
        }
        // A trailers-only answer (an error) has its status in the headers.
        if let Some(status) = grpc_status(response.headers()) {
            return Ok(outcome(status));
        }
        let mut answer = response.into_body();
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = answer.flow_control().release_capacity(chunk.len());
        }
        let trailers = answer.trailers().await.map_err(|e| e.to_string())?;
        Ok(match trailers.as_ref().and_then(grpc_status) {
            Some(status) => outcome(status),
            None => Outcome::Failed { status: "grpc: no grpc-status".into(), retry_after: None },
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

fn outcome(status: i32) -> Outcome {
    if status == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed {
            status: format!("grpc:{:?}", tonic::Code::from_i32(status)),
            retry_after: None,
        }
    }
}

/// The path of the bidirectional stream (`--streaming`, perf_analyzer's).
const MODEL_STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";

/// One caller's `ModelStreamInfer` stream: each request goes out as one message on it and its
/// answer comes back as the next one (the caller waits for it: closed loop). No headers per
/// call, only data frames, which is what makes streaming cheaper than unary calls.
pub struct GrpcStream {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    /// Bytes received and not yet consumed.
    buf: BytesMut,
    _connection: GrpcConnection,
}

impl GrpcStream {
    /// Connects and opens the stream.
    pub async fn open(addr: std::net::SocketAddr, authority: &str) -> Result<GrpcStream, String> {
        let connection = GrpcConnection::connect(addr, authority).await?;
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(MODEL_STREAM_INFER)
            .build()
            .map_err(|e| format!("the address `{authority}`: {e}"))?;
        let mut sender = connection.send.clone().ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, send) = sender.send_request(request, false).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if let Some(status) = grpc_status(response.headers()).filter(|&s| s != 0) {
            return Err(format!("the stream was refused: grpc-status {status}"));
        }
        Ok(GrpcStream {
            send,
            recv: response.into_body(),
            buf: BytesMut::new(),
            _connection: connection,
        })
    }

    /// Sends one framed request on the stream and reads its answer.
    pub async fn exchange(&mut self, framed: &Bytes) -> Result<Outcome, String> {
        self.send.send_data(framed.clone(), false).map_err(|e| e.to_string())?;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    let message = self.buf.split_to(5 + len).freeze();
                    // ModelStreamInferResponse: field 1 is error_message; proto3 writes it
                    // only when it is not empty, and fields go out in number order.
                    let failed = message.len() > 6 && message[5] == 0x0a && message[6] != 0;
                    return Ok(if failed {
                        Outcome::Failed {
                            status: "grpc-stream: error_message".into(),
                            retry_after: None,
                        }
                    } else {
                        Outcome::Ok
                    });
                }
            }
            match self.recv.data().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| e.to_string())?;
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                None => {
                    let status =
                        self.recv.trailers().await.ok().flatten().as_ref().and_then(grpc_status);
                    return Err(format!("the server ended the stream (grpc-status {status:?})"));
                }
            }
        }
    }
}
