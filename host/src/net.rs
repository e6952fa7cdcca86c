//! Bounded connections for every listening face (gRPC, metrics, the
//! witness's HTTP): at most [`NetLimits::max_connections`] open at once
//! (more wait in the kernel's backlog), each closed when it reads nothing
//! for [`NetLimits::idle_timeout`] or nothing at all within
//! [`NetLimits::handshake_timeout`] of being accepted, so a TLS handshake or
//! a request head that never comes holds nothing for long. Accept errors
//! (out of descriptors, above all) back off and are logged, never spun on.
//!
//! Long-lived followers (watch and tail streams) stay up by sending HTTP/2
//! keepalive pings, which count as reads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds of one face's connections.
#[derive(Clone, Copy, Debug)]
pub struct NetLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection that reads nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connection that reads nothing within this long of being accepted
    /// is closed.
    pub handshake_timeout: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A listener that hands out [`Guarded`] connections within its limits.
pub struct BoundedListener {
    listener: TcpListener,
    limits: NetLimits,
    slots: Arc<Semaphore>,
    what: &'static str,
    last_warning: Option<Instant>,
}

impl BoundedListener {
    /// Wraps `listener`; `what` names the face in log lines.
    pub fn new(listener: TcpListener, limits: NetLimits, what: &'static str) -> Self {
        BoundedListener {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            what,
            last_warning: None,
        }
    }

    /// The bound address.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once a slot is free. Accept errors are logged
    /// (at most once a second) and retried after a pause.
    pub async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                // The semaphore is never closed.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (Guarded::new(stream, slot, self.limits), addr);
                }
                Err(e) => {
                    drop(slot);
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                    {
                        self.last_warning = Some(Instant::now());
                        tracing::warn!(face = self.what, error = %e, "cannot accept a connection (out of file descriptors?); retrying in 100 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The connections as a stream, for `serve_with_incoming`.
    pub fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<Guarded, io::Error>> + Send + 'static {
        futures_stream(self)
    }
}

fn futures_stream(
    mut l: BoundedListener,
) -> impl tokio_stream::Stream<Item = Result<Guarded, io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let (conn, _) = tokio::select! {
                c = l.accept() => c,
                () = tx.closed() => return,
            };
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// An accepted connection: its slot, and deadlines on reading.
pub struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    limits: NetLimits,
    read_any: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Guarded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, limits: NetLimits) -> Self {
        Guarded {
            stream,
            _slot: slot,
            limits,
            read_any: false,
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.read_any = true;
                    let next = tokio::time::Instant::now() + self.limits.idle_timeout;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match std::future::Future::poll(self.deadline.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    if self.read_any {
                        "connection idle past its timeout"
                    } else {
                        "nothing received within the handshake timeout"
                    },
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn silent_connections_are_closed_and_the_cap_holds() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut bl = BoundedListener::new(
            l,
            NetLimits {
                max_connections: 1,
                idle_timeout: Duration::from_millis(300),
                handshake_timeout: Duration::from_millis(100),
            },
            "test",
        );
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (mut conn, _) = bl.accept().await;
        let mut b = [0u8; 8];
        let e = conn.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("handshake"), "{e}");
        // The slot is held until the connection is dropped: a second
        // client waits in the backlog.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), bl.accept()).await;
        assert!(waiting.is_err(), "a second connection got past a cap of 1");
        drop(conn);
        second.write_all(b"hello").await.unwrap();
        let (mut conn, _) = bl.accept().await;
        assert_eq!(conn.read(&mut b).await.unwrap(), 5);
        // Then idle: closed after the idle timeout.
        let e = conn.read(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("idle"), "{e}");
    }
}
