//! Connection plumbing: a listener whose connections report when the HTTP
//! server has flushed everything it buffered.
//!
//! hyper drops a connection's unflushed buffer when a response body fails, so
//! "send n bytes, then abort" would lose some of the n bytes. The body stream
//! of a `DropAfter` response therefore waits for the flush notification from
//! this wrapper before it fails.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Per-connection state shared between the socket wrapper and the handlers.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    flushes: AtomicU64,
    flushed: Notify,
}

impl ConnCtl {
    /// Number of completed flushes so far.
    pub(crate) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// Waits until more than `seen` flushes have completed.
    pub(crate) async fn flushed_since(&self, seen: u64) {
        loop {
            let notified = self.flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.flush_count() > seen {
                return;
            }
            notified.await;
        }
    }
}

/// A TCP stream that counts completed flushes.
pub(crate) struct SimIo {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = res {
            // hyper flushes the socket only once its own buffer is empty.
            self.ctl.flushes.fetch_add(1, Ordering::AcqRel);
            self.ctl.flushed.notify_waiters();
        }
        res
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener producing [`SimIo`] connections.
pub(crate) struct SimListener {
    inner: TcpListener,
}

impl SimListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        SimListener { inner }
    }
}

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = SimIo {
                        inner: stream,
                        ctl: Arc::new(ConnCtl::default()),
                    };
                    return (io, addr);
                }
                Err(e) => {
                    // Per-connection errors (reset before accept) are harmless;
                    // anything else (EMFILE, ...) gets a short pause.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::debug!("simulator accept error: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What a handler learns about its connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) ctl: Arc<ConnCtl>,
}

impl Connected<IncomingStream<'_, SimListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        ConnInfo {
            ctl: stream.io().ctl.clone(),
        }
    }
}
