//! One client connection: optional TLS, then hyper's HTTP/1.1 state machine under the
//! ingress's limits, until the client goes, the connection stays idle too long, or the ingress
//! stops.
//!
//! Limits hyper enforces itself (verified by `tests/ingress.rs`):
//! - more than `max_header_count` header fields, or a head over `max_header_bytes`: hyper
//!   answers `431 Request Header Fields Too Large` and closes the connection;
//! - a head not complete within `header_timeout`: hyper closes the connection without an
//!   answer (no 408). Its timer also runs while a keep-alive connection waits for its next
//!   request, so an idle keep-alive connection lasts at most `header_timeout` as well.
//!
//! What this module adds: the TLS handshake is bounded by `header_timeout` too, and a
//! connection with no request in flight and no bytes either way for `idle_timeout` is shut
//! down gracefully; one still open another `idle_timeout` later with no bytes moving (a client
//! that stopped reading its response) is dropped. On stop, hyper's graceful shutdown lets the
//! request in flight finish.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::server::Shared;

/// How often an open connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// A stream that remembers when bytes last went either way.
struct Tracked<S> {
    inner: S,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests of one connection whose response head is not out yet.
pub(crate) type Busy = Arc<AtomicUsize>;

/// Serves one accepted connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, cancel: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let tracked = Tracked {
        inner: stream,
        epoch,
        last: last.clone(),
    };
    let activity = Activity { epoch, last };
    match shared.tls.clone() {
        None => http(shared, tracked, activity, cancel).await,
        Some(acceptor) => {
            let timeout = shared.settings.header_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(tracked)).await {
                Ok(Ok(tls)) => http(shared, tls, activity, cancel).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "ingress: TLS handshake failed"),
                Err(_) => tracing::debug!("ingress: TLS handshake timed out"),
            }
        }
    }
}

struct Activity {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn quiet_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

async fn http<I>(shared: Arc<Shared>, io: I, activity: Activity, cancel: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = &shared.settings;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_timeout)
        .max_headers(s.max_header_count)
        .max_header_size(s.max_header_bytes)
        .keep_alive(true);
    let busy: Busy = Arc::new(AtomicUsize::new(0));
    let svc = {
        let shared = shared.clone();
        let busy = busy.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            let busy = busy.clone();
            async move {
                Ok::<_, std::convert::Infallible>(super::server::handle(shared, req, busy).await)
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = s.idle_timeout;
    let mut closing = false;
    let mut tick = tokio::time::interval(IDLE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Header timeouts, parse errors, clients going away mid-request.
                    tracing::debug!(error = %e, "ingress: connection ended");
                }
                break;
            }
            () = cancel.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick() => {
                let quiet = activity.quiet_for();
                if !closing && busy.load(Ordering::Relaxed) == 0 && quiet >= idle {
                    tracing::debug!("ingress: closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                } else if closing && quiet >= idle.saturating_mul(2) {
                    // A graceful shutdown waits for the response being written; a client
                    // that stopped reading it does not get to hold the connection.
                    tracing::debug!("ingress: dropping a connection that stopped reading");
                    break;
                }
            }
        }
    }
}
