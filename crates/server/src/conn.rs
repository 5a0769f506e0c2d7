//! One connection's watchdog and accounting: requests in flight, idle and
//! header deadlines, bytes read and written (see [`ConnWatch`]), and the
//! response body that keeps its request counted until it is done.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What a connection's watchdog knows: requests in flight (from the head's
/// arrival until the response body is done) and, between requests, when the
/// connection went idle and when the next request's first byte came.
///
/// Rules: a new connection must deliver a whole request head within the
/// header timeout; between requests an idle connection is closed after the
/// idle timeout; once a byte of the next request arrives, its head must be
/// whole within the header timeout (so one byte a second holds nothing for
/// long). Bodies have their own limits (`read_body`).
#[derive(Debug)]
pub(crate) struct ConnWatch {
    origin: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    idle_since_ms: AtomicU64,
    head_started_ms: AtomicU64,
    /// Bytes a second an answer must at least go out at, once queued.
    min_write_rate: u64,
}

const NOT_STARTED: u64 = u64::MAX;

impl ConnWatch {
    pub(crate) fn new(min_write_rate: u64) -> Self {
        Self {
            min_write_rate: min_write_rate.max(1),
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_STARTED),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == NOT_STARTED
        {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// An answer still going out (a slow reader of a large one) keeps the
    /// connection from counting as idle, at the minimum rate: each `n` bytes
    /// written move the idle clock on by `n / min_write_rate` (never past
    /// now), so a reader slower than that still reaches the idle timeout.
    fn bytes_written(&self, n: usize) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let credit = (n as u64).saturating_mul(1000) / self.min_write_rate;
            let now = self.now_ms();
            let _ =
                self.idle_since_ms
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |since| {
                        Some(since.saturating_add(credit).min(now))
                    });
        }
    }

    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::Relaxed);
        self.head_started_ms.store(NOT_STARTED, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the watchdog must act, if nothing changes; `None` while a request
    /// is in flight.
    fn deadline_ms(&self, header: Duration, idle: Duration) -> Option<u64> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let header = header.as_millis() as u64;
        Some(match self.head_started_ms.load(Ordering::Relaxed) {
            NOT_STARTED if !self.served.load(Ordering::Relaxed) => header,
            NOT_STARTED => self.idle_since_ms.load(Ordering::Relaxed) + idle.as_millis() as u64,
            started => started + header,
        })
    }
}

/// A request in flight; dropped when its response body is done (or dropped).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        watch.idle_since_ms.store(watch.now_ms(), Ordering::Relaxed);
        watch.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Returns when the connection must be closed.
pub(crate) async fn watchdog(watch: &ConnWatch, header: Duration, idle: Duration) {
    loop {
        let now = watch.now_ms();
        match watch.deadline_ms(header, idle) {
            Some(deadline) if now >= deadline => return,
            Some(deadline) => tokio::time::sleep(Duration::from_millis(deadline - now)).await,
            None => tokio::time::sleep(header).await,
        }
    }
}

/// The connection's I/O, noting for the watchdog when bytes arrive.
pub(crate) struct Watched<IO> {
    pub(crate) inner: IO,
    pub(crate) watch: Arc<ConnWatch>,
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.bytes_written(n);
        }
        polled
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
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.bytes_written(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request counted as in flight until it is
/// done.
pub struct Counted<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Counted<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
