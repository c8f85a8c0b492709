//! Bodies between the ingress and a guest: the request body, capped on its way in, and the
//! response body, capped, under the request's deadline, and telling the call's task whether it
//! ended cleanly (only then is the instance reused).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::ingress::BoxError;

/// A request body that fails once more than `cap` bytes have come, and says so in `over`.
pub(crate) struct RequestBody<B> {
    inner: Pin<Box<B>>,
    seen: u64,
    cap: u64,
    over: Arc<AtomicBool>,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, cap: u64, over: Arc<AtomicBool>) -> Self {
        Self {
            inner: Box::pin(inner),
            seen: 0,
            cap,
            over,
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.over.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(this.cap)))));
        }
        match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.cap {
                        this.over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(
                            this.cap,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                tracing::debug!(error = %e, "request body failed");
                Poll::Ready(Some(Err(HttpError::HttpProtocolError)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a response body was cut.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cut {
    #[error("the response body passed {0} bytes; cut")]
    TooLarge(u64),
    #[error("the request's deadline passed while its body was sent; cut")]
    Deadline,
    #[error("the plugin's response body failed: {0}")]
    Guest(String),
    #[error("the plugin's instance was stopped before its body ended")]
    Stopped,
}

/// The guest's response body on its way to the client.
///
/// `end` is answered `true` when the body ended cleanly, `false` when it was cut (over the
/// cap, past the deadline, an error) or dropped before its end; a cut also cancels `cut`, which
/// stops the call still writing it. When the call's task drops the instance first it cancels
/// `cut` itself: the body then ends with an error, never as if complete.
///
/// Once the guest has finished the body, its end is held back until `released` (the call's
/// task has returned the instance to the pool and freed its in-flight permit), for at most
/// [`RELEASE_GRACE`]: the guest's `handle` returns microseconds after it finishes the body,
/// and a client sending its next request as soon as it has read this one's end should find
/// the instance idle rather than start another (or be refused for a permit still held).
pub(crate) struct ResponseBody {
    // Only ever used through `&mut` (`get_mut`): the mutex makes the body `Sync`, as the
    // ingress's `BoxBody` requires, without ever being locked.
    inner: std::sync::Mutex<HyperOutgoingBody>,
    sent: u64,
    cap: u64,
    deadline: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    end: Option<oneshot::Sender<bool>>,
    cut: CancellationToken,
    released: Option<oneshot::Receiver<()>>,
    state: State,
}

/// Longest the end of a finished body waits for its instance's release.
pub(crate) const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The guest finished the body; waiting for the release (the timer is the grace).
    Releasing,
    Done,
}

impl ResponseBody {
    pub(crate) fn new(
        inner: HyperOutgoingBody,
        cap: u64,
        deadline: Instant,
        end: oneshot::Sender<bool>,
        cut: CancellationToken,
    ) -> Self {
        Self {
            inner: std::sync::Mutex::new(inner),
            sent: 0,
            cap,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline.into())),
            end: Some(end),
            cut,
            released: None,
            state: State::Streaming,
        }
    }

    /// Holds the body's end back until `released` resolves (or [`RELEASE_GRACE`] passes).
    pub(crate) fn released_by(mut self, released: oneshot::Receiver<()>) -> Self {
        self.released = Some(released);
        self
    }

    fn finish(&mut self, clean: bool) {
        if let Some(end) = self.end.take() {
            if !clean {
                self.cut.cancel();
            }
            let _ = end.send(clean);
        }
    }

    fn fail(&mut self, why: Cut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::debug!(reason = %why, "response body cut");
        self.state = State::Done;
        self.finish(false);
        Poll::Ready(Some(Err(Box::new(why))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match this.state {
            State::Done => return Poll::Ready(None),
            State::Releasing => return this.poll_release(cx),
            State::Streaming => {}
        }
        if Instant::now() >= this.deadline {
            return this.fail(Cut::Deadline);
        }
        let inner = this
            .inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent = this.sent.saturating_add(data.len() as u64);
                    if this.sent > this.cap {
                        return this.fail(Cut::TooLarge(this.cap));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(Cut::Guest(format!("{e:?}"))),
            Poll::Ready(None) => {
                if this.cut.is_cancelled() {
                    return this.fail(Cut::Stopped);
                }
                this.finish(true);
                this.state = State::Releasing;
                this.timer
                    .as_mut()
                    .reset((Instant::now() + RELEASE_GRACE).into());
                this.poll_release(cx)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    return this.fail(Cut::Deadline);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }
}

impl ResponseBody {
    fn poll_release(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let released = match self.released.as_mut() {
            None => true,
            // Sent or dropped: either way the call's task is done with the instance.
            Some(rx) => Pin::new(rx).poll(cx).is_ready(),
        };
        if released || self.timer.as_mut().poll(cx).is_ready() {
            self.released = None;
            self.state = State::Done;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away, or the server stopped reading. A body
        // whose last frame was read but whose end was never polled still counts as whole.
        let whole = self
            .inner
            .get_mut()
            .map(|b| b.is_end_stream())
            .unwrap_or(false);
        self.finish(whole && !self.cut.is_cancelled());
    }
}
