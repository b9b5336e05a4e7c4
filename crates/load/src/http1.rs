//! The load loop's HTTP/1.1 client: one keep-alive connection per caller that writes the
//! request encoded once (head and body in one buffer, one `write` per request) and reads the
//! answer with `httparse`, keeping only its status and `Retry-After`.
//!
//! hyper (used for discovery and statistics) builds a `Request`, a header map and a body frame
//! per request and hands the bytes through its dispatcher; that work was most of the client's
//! user-space time per request against a trivial endpoint, where the client must cost less
//! than the server to measure it (docs/performance.md, "thrum load: its own cost").
//!
//! Framing follows RFC 9112: `Content-Length`, `chunked`, or (no framing) the body runs to the
//! end of the connection; 1xx answers are skipped; 204 and 304 have no body; `Connection:
//! close` (or an HTTP/1.0 answer without keep-alive) ends the connection after the answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Outcome;

/// Headers read per answer; more is a malformed answer for a v2 server.
const MAX_HEADERS: usize = 64;
/// A head longer than this is not an HTTP answer this client accepts.
const MAX_HEAD: usize = 64 * 1024;

/// The request sent on every call: head and body, encoded once.
pub fn encode_request(
    host: &str,
    path: &str,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// How the body of an answer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No framing: the body ends with the connection.
    UntilClose,
}

/// What the head of an answer says.
#[derive(Debug)]
struct Head {
    status: u16,
    length: usize,
    framing: Framing,
    retry_after: Option<Duration>,
    close: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("an answer head longer than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP/1.1 answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut retry_after = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 =
                value.parse().map_err(|_| format!("an invalid Content-Length `{value}`"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err("two different Content-Length headers".into());
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked =
                value.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head { status, length, framing, retry_after, close }))
}

/// One caller's keep-alive connection.
pub struct HttpConnection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// Answers read on this connection: a reused connection that the server closed before
    /// answering is stale (the request is sent again on a new one), a new one is a failure.
    answered: u64,
    /// The server ended the connection (or it broke): it carries no more requests.
    closed: bool,
}

impl HttpConnection {
    /// Connects (10 s at most), with Nagle off.
    pub async fn connect(addr: std::net::SocketAddr) -> Result<HttpConnection, String> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| "connecting timed out after 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(HttpConnection {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            answered: 0,
            closed: false,
        })
    }

    /// Reads more bytes into the buffer; 0 at the end of the connection.
    async fn fill(&mut self) -> Result<usize, String> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        self.stream.read_buf(&mut self.buf).await.map_err(|e| {
            self.closed = true;
            e.to_string()
        })
    }

    /// The server ended the connection before a whole answer.
    fn ended(&mut self, what: &str) -> Result<Outcome, String> {
        self.closed = true;
        if self.buf.is_empty() && self.answered > 0 {
            Ok(Outcome::Stale)
        } else {
            Err(format!("the server closed the connection {what}"))
        }
    }

    /// Sends `request` (from [`encode_request`]) and reads the whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Outcome, String> {
        if self.closed {
            return Ok(Outcome::Stale);
        }
        self.buf.clear();
        if let Err(e) = self.stream.write_all(request).await {
            self.closed = true;
            // A reused connection the server had already closed: nothing of the request was
            // read, so it is sent again on a new connection.
            return if self.answered > 0 { Ok(Outcome::Stale) } else { Err(e.to_string()) };
        }
        let head = loop {
            let head = loop {
                if let Some(head) = parse_head(&self.buf).inspect_err(|_| self.closed = true)? {
                    break head;
                }
                match self.fill().await {
                    Ok(0) => return self.ended("before answering"),
                    Ok(_) => {}
                    // Reset before any byte of an answer on a reused connection.
                    Err(_) if self.buf.is_empty() && self.answered > 0 => {
                        return Ok(Outcome::Stale);
                    }
                    Err(e) => return Err(e),
                }
            };
            self.buf.drain(..head.length);
            if (100..200).contains(&head.status) {
                continue;
            }
            break head;
        };
        self.skip_body(head.framing).await?;
        if !self.buf.is_empty() {
            // Bytes past the answer: nothing was pipelined, so the stream is out of step.
            self.closed = true;
        }
        self.answered += 1;
        if head.close {
            self.closed = true;
        }
        Ok(if head.status == 200 {
            Outcome::Ok
        } else {
            Outcome::Failed { status: head.status.to_string(), retry_after: head.retry_after }
        })
    }

    /// Reads past the body; what follows it stays in the buffer.
    async fn skip_body(&mut self, framing: Framing) -> Result<(), String> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.skip(n).await,
            Framing::UntilClose => {
                self.buf.clear();
                while self.fill().await? > 0 {
                    self.buf.clear();
                }
                self.closed = true;
                Ok(())
            }
            Framing::Chunked => loop {
                let (consumed, size) = loop {
                    match httparse::parse_chunk_size(&self.buf) {
                        Ok(httparse::Status::Complete(c)) => break c,
                        Ok(httparse::Status::Partial) => {}
                        Err(_) => {
                            self.closed = true;
                            return Err("an invalid chunk size in a chunked answer".into());
                        }
                    }
                    if self.fill().await? == 0 {
                        self.closed = true;
                        return Err("the server closed the connection mid-answer".into());
                    }
                };
                self.buf.drain(..consumed);
                if size == 0 {
                    return self.skip_trailers().await;
                }
                // The chunk's data and its CRLF.
                self.skip(size + 2).await?;
            },
        }
    }

    /// Drops `n` bytes of the stream, buffered first.
    async fn skip(&mut self, mut n: u64) -> Result<(), String> {
        loop {
            let buffered = (self.buf.len() as u64).min(n);
            self.buf.drain(..buffered as usize);
            n -= buffered;
            if n == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                self.closed = true;
                return Err("the server closed the connection mid-answer".into());
            }
        }
    }

    /// Reads the trailer section after the last chunk, up to its empty line.
    async fn skip_trailers(&mut self) -> Result<(), String> {
        loop {
            if self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
                return Ok(());
            }
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                self.buf.drain(..end + 4);
                return Ok(());
            }
            if self.buf.len() > MAX_HEAD {
                self.closed = true;
                return Err(format!("trailers longer than {MAX_HEAD} bytes"));
            }
            if self.fill().await? == 0 {
                self.closed = true;
                return Err("the server closed the connection mid-answer".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that, for each connection, reads one request head per script entry and writes
    /// that entry's pieces with a pause between them (split reads); after its last entry the
    /// connection is closed. Returns its address and the requests it read.
    async fn scripted(
        connections: Vec<Vec<Vec<&'static [u8]>>>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for answers in connections {
                let (mut socket, _) = listener.accept().await.unwrap();
                for pieces in answers {
                    // One request: a head and its Content-Length body.
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    while !got.ends_with(b"\r\n\r\n") {
                        socket.read_exact(&mut byte).await.unwrap();
                        got.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&got).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    let mut body = vec![0; length];
                    socket.read_exact(&mut body).await.unwrap();
                    got.extend(body);
                    requests.push(got);
                    for piece in pieces {
                        socket.write_all(piece).await.unwrap();
                        socket.flush().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            requests
        });
        (addr, server)
    }

    fn request() -> Vec<u8> {
        encode_request(
            "127.0.0.1:1",
            "/v2/models/m/infer",
            "application/json",
            &[("Inference-Header-Content-Length", "2".into())],
            b"{}",
        )
    }

    #[test]
    fn the_request_is_what_a_server_parses() {
        let bytes = request();
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = parsed.parse(&bytes).unwrap() else { panic!() };
        assert_eq!(parsed.method, Some("POST"));
        assert_eq!(parsed.path, Some("/v2/models/m/infer"));
        let names: Vec<&str> = parsed.headers.iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            ["Host", "Content-Type", "Content-Length", "Inference-Header-Content-Length"]
        );
        assert_eq!(&bytes[n..], b"{}");
    }

    #[tokio::test]
    async fn framings_split_reads_and_statuses() {
        let (addr, server) = scripted(vec![vec![
            // Content-Length, the head and the body in separate reads.
            vec![b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nhel", b"lo"],
            // Chunked with a chunk split across reads, and a trailer.
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", b"c\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"],
            // An interim answer before the real one.
            vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
            // Queue full, with Retry-After.
            vec![b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nfull"],
            // 204: no body even without framing headers.
            vec![b"HTTP/1.1 204 No Content\r\n\r\n"],
            // The last answer on this connection.
            vec![b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad"],
        ]])
        .await;
        let mut c = HttpConnection::connect(addr).await.unwrap();
        let req = request();
        assert_eq!(c.exchange(&req).await, Ok(Outcome::Ok));
        assert_eq!(c.exchange(&req).await, Ok(Outcome::Ok));
        assert_eq!(c.exchange(&req).await, Ok(Outcome::Ok));
        assert_eq!(
            c.exchange(&req).await,
            Ok(Outcome::Failed { status: "503".into(), retry_after: Some(Duration::from_secs(2)) })
        );
        assert_eq!(
            c.exchange(&req).await,
            Ok(Outcome::Failed { status: "204".into(), retry_after: None })
        );
        assert_eq!(
            c.exchange(&req).await,
            Ok(Outcome::Failed { status: "400".into(), retry_after: None })
        );
        // After `Connection: close` nothing more is sent on it.
        assert_eq!(c.exchange(&req).await, Ok(Outcome::Stale));
        let requests = server.await.unwrap();
        assert_eq!(requests.len(), 6);
        assert!(requests.iter().all(|r| r == &req));
    }

    #[tokio::test]
    async fn a_body_to_the_end_of_the_connection() {
        let (addr, server) =
            scripted(vec![vec![vec![b"HTTP/1.0 200 OK\r\n\r\nsome", b" body"]]]).await;
        let mut c = HttpConnection::connect(addr).await.unwrap();
        assert_eq!(c.exchange(&request()).await, Ok(Outcome::Ok));
        assert!(c.closed);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_reused_connection_is_stale_a_new_one_fails() {
        // The first connection answers once and is closed by the server (a keep-alive limit
        // without `Connection: close`); the second is closed before any answer.
        let (addr, server) = scripted(vec![
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]],
            vec![vec![]],
        ])
        .await;
        let mut c = HttpConnection::connect(addr).await.unwrap();
        assert_eq!(c.exchange(&request()).await, Ok(Outcome::Ok));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.exchange(&request()).await, Ok(Outcome::Stale));
        let mut fresh = HttpConnection::connect(addr).await.unwrap();
        let failed = fresh.exchange(&request()).await.unwrap_err();
        assert!(failed.contains("closed the connection before answering"), "{failed}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn malformed_and_truncated_answers_are_errors() {
        let (addr, server) = scripted(vec![
            vec![vec![b"SMTP ready\r\n\r\n"]],
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]],
            vec![vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]],
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]],
        ])
        .await;
        for expected in [
            "not an HTTP/1.1 answer",
            "closed the connection mid-answer",
            "invalid chunk size",
            "invalid Content-Length `x`",
        ] {
            let mut c = HttpConnection::connect(addr).await.unwrap();
            let e = c.exchange(&request()).await.unwrap_err();
            assert!(e.contains(expected), "{e} (expected {expected})");
            assert!(c.closed);
        }
        server.await.unwrap();
    }
}
