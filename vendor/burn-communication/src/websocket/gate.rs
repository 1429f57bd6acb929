//! PATCH (scal-rs): a bound on the first WebSocket message of each connection, enforced on the
//! raw bytes before anything buffers them.
//!
//! A server on this crate reads whole messages of up to [`MAX_MESSAGE_SIZE`] bytes (1 GiB,
//! for tensors) before its handler sees them, so a peer that was never admitted could make it
//! allocate a gibibyte per connection: the session's token is only checked in the first
//! message. Every protocol served here opens with a small message (a session's `Init`, a
//! tensor request), so the first message of a connection is held to
//! [`DEFAULT_FIRST_MESSAGE_LIMIT`]: the frame header that declares more closes the connection,
//! before its payload is read. Later messages, sent once the handler admitted the peer, keep
//! the route's limit.
//!
//! [`MAX_MESSAGE_SIZE`]: super::base::MAX_MESSAGE_SIZE

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::base::DeadPeerTimeout;

/// The default bound on a connection's first message, in bytes.
pub const DEFAULT_FIRST_MESSAGE_LIMIT: usize = 64 * 1024;

/// The most bytes the HTTP request that opens a connection may take.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Accepts TCP connections (with the dead-peer timeout) and wraps each in a [`FirstMessageGate`].
pub(crate) struct GatedListener {
    pub(crate) inner: TcpListener,
    pub(crate) first_message_limit: usize,
}

impl Listener for GatedListener {
    type Io = FirstMessageGate<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.inner).await;
        stream.set_dead_peer_timeout();
        (
            FirstMessageGate::new(stream, self.first_message_limit),
            address,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The peer's address, as the routes receive it from a [`GatedListener`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddress(pub(crate) SocketAddr);

impl Connected<IncomingStream<'_, GatedListener>> for PeerAddress {
    fn connect_info(stream: IncomingStream<'_, GatedListener>) -> Self {
        PeerAddress(*stream.remote_addr())
    }
}

/// Where the gate is in the bytes a peer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// In the HTTP request head: `matched` bytes of the blank line that ends it seen, `read`
    /// bytes in all.
    Head { matched: usize, read: usize },
    /// In the frames of the first message: `header` holds the current frame header's first
    /// `have` bytes; `message` counts the message's payload bytes so far.
    Header {
        header: [u8; 14],
        have: usize,
        message: u64,
    },
    /// In a frame's payload: `left` bytes to go; `last` when the frame ends the first message.
    Payload { left: u64, last: bool, message: u64 },
    /// The first message is complete: everything else passes untouched.
    Open,
}

/// An IO whose reads fail once its peer declares a first WebSocket message larger than the
/// limit (or sends something that is not a WebSocket frame after the request head); writes
/// pass through. It only inspects bytes: nothing is buffered.
#[derive(Debug)]
pub struct FirstMessageGate<T> {
    inner: T,
    limit: u64,
    state: State,
}

impl<T> FirstMessageGate<T> {
    /// Wraps `inner`, holding its first message to `limit` bytes.
    pub fn new(inner: T, limit: usize) -> Self {
        Self {
            inner,
            limit: limit as u64,
            state: State::Head {
                matched: 0,
                read: 0,
            },
        }
    }

    /// Follows `bytes`, just read from the peer; an error ends the connection.
    fn inspect(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            bytes = match &mut self.state {
                State::Open => return Ok(()),
                State::Head { matched, read } => {
                    let (used, ended) = scan_head(bytes, matched);
                    *read += used;
                    if *read > MAX_REQUEST_HEAD {
                        return Err(refused("the request head is too large"));
                    }
                    if ended {
                        self.state = State::Header {
                            header: [0; 14],
                            have: 0,
                            message: 0,
                        };
                    }
                    &bytes[used..]
                }
                State::Header {
                    header,
                    have,
                    message,
                } => {
                    let want = header_length(&header[..*have]);
                    let take = (want - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    if *have == header_length(&header[..*have]) {
                        self.state = next_after_header(&header[..*have], *message, self.limit)?;
                    }
                    &bytes[take..]
                }
                State::Payload {
                    left,
                    last,
                    message,
                } => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    if *left == 0 {
                        self.state = if *last {
                            State::Open
                        } else {
                            State::Header {
                                header: [0; 14],
                                have: 0,
                                message: *message,
                            }
                        };
                    }
                    &bytes[take as usize..]
                }
            };
            if let State::Payload { left: 0, last, .. } = self.state {
                // A frame with no payload ends at its header.
                self.state = if last {
                    State::Open
                } else {
                    State::Header {
                        header: [0; 14],
                        have: 0,
                        message: self.message_so_far(),
                    }
                };
            }
        }
        Ok(())
    }

    fn message_so_far(&self) -> u64 {
        match self.state {
            State::Payload { message, .. } | State::Header { message, .. } => message,
            _ => 0,
        }
    }
}

/// How many of `bytes` belong to the request head, and whether it ended there; `matched`
/// carries the part of `\r\n\r\n` seen across reads.
fn scan_head(bytes: &[u8], matched: &mut usize) -> (usize, bool) {
    const END: &[u8; 4] = b"\r\n\r\n";
    for (i, &b) in bytes.iter().enumerate() {
        *matched = if b == END[*matched] {
            *matched + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if *matched == END.len() {
            return (i + 1, true);
        }
    }
    (bytes.len(), false)
}

/// The length of the frame header that starts with `start` (2 bytes at least are needed to
/// know it; 2 is returned before).
fn header_length(start: &[u8]) -> usize {
    if start.len() < 2 {
        return 2;
    }
    let extended = match start[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if start[1] & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// The state after a complete frame `header`, with `message` payload bytes of the first
/// message before it.
fn next_after_header(header: &[u8], message: u64, limit: u64) -> io::Result<State> {
    let fin = header[0] & 0x80 != 0;
    if header[0] & 0x70 != 0 {
        return Err(refused("not a WebSocket frame (reserved bits set)"));
    }
    let opcode = header[0] & 0x0F;
    let length = match header[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")),
        short => u64::from(short),
    };
    match opcode {
        // Continuation, text, binary: the first message's frames.
        0..=2 => {
            let message = message.saturating_add(length);
            if message > limit {
                return Err(refused(&format!(
                    "its first message holds more than {limit} bytes ({message} declared), \
                     before the peer was admitted"
                )));
            }
            Ok(State::Payload {
                left: length,
                last: fin,
                message,
            })
        }
        // Close, ping, pong: at most 125 bytes, between the first message's frames.
        8..=10 if length <= 125 => Ok(State::Payload {
            left: length,
            last: false,
            message,
        }),
        _ => Err(refused("not a WebSocket frame (reserved opcode or oversized control frame)")),
    }
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("connection refused: {why}"))
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstMessageGate<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && self.state != State::Open
        {
            let fresh = buf.filled()[before..].to_vec();
            if let Err(err) = self.inspect(&fresh) {
                log::warn!("{err}");
                buf.set_filled(before);
                return Poll::Ready(Err(err));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstMessageGate<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> FirstMessageGate<()> {
        FirstMessageGate::new((), 1024)
    }

    const HEAD: &[u8] = b"GET /session HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";

    /// A masked client frame header of `length` payload bytes.
    fn frame(fin: bool, opcode: u8, length: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match length {
            0..=125 => h.push(0x80 | length as u8),
            126..=65535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&length.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn a_large_first_message_is_refused_at_its_header() {
        let mut g = gate();
        g.inspect(HEAD).unwrap();
        let err = g.inspect(&frame(true, 2, 900 << 20)).unwrap_err();
        assert!(err.to_string().contains("first message"), "{err}");
    }

    #[test]
    fn a_small_first_message_opens_the_connection_in_any_split() {
        let mut bytes = HEAD.to_vec();
        bytes.extend(frame(false, 2, 600));
        bytes.extend(vec![7; 600]);
        bytes.extend(frame(true, 9, 4)); // a ping between the fragments
        bytes.extend(vec![7; 4]);
        bytes.extend(frame(true, 0, 400));
        bytes.extend(vec![7; 400]);
        bytes.extend(frame(true, 2, 900 << 20)); // admitted: later messages are not gated
        for chunk in [1, 3, 7, 64, bytes.len()] {
            let mut g = gate();
            for piece in bytes.chunks(chunk) {
                g.inspect(piece).unwrap();
            }
            assert_eq!(g.state, State::Open, "chunks of {chunk}");
        }
    }

    #[test]
    fn fragments_count_towards_the_first_message() {
        let mut g = gate();
        g.inspect(HEAD).unwrap();
        g.inspect(&frame(false, 2, 1000)).unwrap();
        g.inspect(&[0; 1000]).unwrap();
        assert!(g.inspect(&frame(true, 0, 100)).is_err());
    }

    #[test]
    fn bytes_that_are_no_frame_and_an_endless_head_are_refused() {
        let mut g = gate();
        g.inspect(HEAD).unwrap();
        assert!(g.inspect(b"GET / HTTP/1.1\r\n").is_err());
        let mut g = gate();
        assert!(g.inspect(&vec![b'a'; MAX_REQUEST_HEAD + 1]).is_err());
    }
}
