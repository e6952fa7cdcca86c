//! Bounds on what streaming readers can hold.
//!
//! Entry streams (`GetEntries`, `TailEntries`) produce a page only when the
//! transport asks for the next one (no read-ahead), read it on the blocking
//! pool (a short read, never a wait on the client) and hand it over from an
//! async task, so a client that stops reading holds no thread and at most
//! one page of at most [`PAGE_BYTES`] (in the transport's send buffer). A
//! page reserves its bytes from one server-wide [`ResponseBudget`] while it
//! is read and queued, so bursts of readers cannot grow memory past it
//! (`RESOURCE_EXHAUSTED` naming the budget). Open entry streams are capped
//! ([`StreamSlots`]), and a stream whose transport asks for nothing for
//! [`SEND_TIMEOUT`] ends, freeing its slot.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use quire_host::budget::ByteBudget;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;

use super::ApiError;

/// Largest page of entries, bytes (at least one entry): well within the
/// 4 MiB a standard gRPC client accepts, and what an unread stream can hold.
pub const PAGE_BYTES: usize = 1 << 20;

/// How long a stream waits for its transport to ask for the next page.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a page waits for room in the budget.
pub const BUDGET_WAIT: Duration = Duration::from_secs(10);

/// The bytes of pages read for clients and not yet taken by them, from the
/// server's budget of bytes in flight (shared with request bodies, see
/// [`quire_host::budget`]).
#[derive(Clone, Debug)]
pub struct ResponseBudget {
    budget: ByteBudget,
    wait: Duration,
}

impl ResponseBudget {
    /// A budget of `bytes` of its own.
    pub fn new(bytes: usize) -> Self {
        Self::of(ByteBudget::new(bytes))
    }

    /// Pages reserve from `budget`.
    pub fn of(budget: ByteBudget) -> Self {
        ResponseBudget {
            budget,
            wait: BUDGET_WAIT,
        }
    }

    /// The same budget, waiting `wait` for room instead of [`BUDGET_WAIT`].
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Reserves `bytes` (at most the whole budget), waiting for room up to
    /// [`BUDGET_WAIT`] (or the wait set).
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` naming the budget when no room came in time.
    pub async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        self.budget
            .reserve(bytes, self.wait)
            .await
            .map_err(|e| ApiError::Exhausted(e.to_string()))
    }
}

/// The cap on open entry streams, server-wide.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    sem: Arc<Semaphore>,
    max: usize,
}

impl StreamSlots {
    /// A cap of `max` streams.
    pub fn new(max: usize) -> Self {
        StreamSlots {
            sem: Arc::new(Semaphore::new(max.max(1))),
            max,
        }
    }

    /// A slot for one more stream.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` naming the cap when all are taken.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.sem).try_acquire_owned().map_err(|_| {
            ApiError::Exhausted(format!(
                "{} entry streams are open, the server's limit; retry later",
                self.max
            ))
        })
    }
}

type Item<T> = (Result<T, ApiError>, Option<OwnedSemaphorePermit>);

/// The sending side of an entry stream.
pub struct PageSender<T> {
    tx: mpsc::Sender<Item<T>>,
    want: Arc<Notify>,
    abort: Arc<Mutex<Option<ApiError>>>,
    _slot: OwnedSemaphorePermit,
}

/// An entry stream and its sender, holding `slot` until both are gone.
pub fn channel<T>(slot: OwnedSemaphorePermit) -> (PageSender<T>, PageStream<T>) {
    let (tx, rx) = mpsc::channel(1);
    let abort = Arc::new(Mutex::new(None));
    let want = Arc::new(Notify::new());
    (
        PageSender {
            tx,
            want: Arc::clone(&want),
            abort: Arc::clone(&abort),
            _slot: slot,
        },
        PageStream {
            rx,
            want,
            asked: false,
            abort,
        },
    )
}

impl<T> PageSender<T> {
    /// Waits until the transport asks for the next page. Returns false when
    /// the stream is over: the client went away, or nothing was asked for
    /// [`SEND_TIMEOUT`] (then the stream ends with `RESOURCE_EXHAUSTED`).
    pub async fn wanted(&mut self) -> bool {
        tokio::select! {
            r = tokio::time::timeout(SEND_TIMEOUT, self.want.notified()) => {
                if r.is_err() {
                    self.fail(ApiError::Exhausted(format!(
                        "the client read nothing for {} s; the stream is closed",
                        SEND_TIMEOUT.as_secs()
                    )));
                    return false;
                }
                true
            }
            () = self.tx.closed() => false,
        }
    }

    /// Sends `page`, which holds `permit` until the transport takes it.
    /// Call after [`PageSender::wanted`]. Returns false when the client went
    /// away.
    pub async fn send(&mut self, page: T, permit: OwnedSemaphorePermit) -> bool {
        self.tx.send((Ok(page), Some(permit))).await.is_ok()
    }

    /// Ends the stream with `error` after what was sent.
    pub fn fail(&mut self, error: ApiError) {
        error.report();
        *self.abort.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Resolves when the client goes away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// The receiving side: the pages, then the failure if there was one.
pub struct PageStream<T> {
    rx: mpsc::Receiver<Item<T>>,
    want: Arc<Notify>,
    asked: bool,
    abort: Arc<Mutex<Option<ApiError>>>,
}

impl<T> Stream for PageStream<T> {
    type Item = Result<T, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.asked {
            // The transport wants the next page: produce one.
            self.want.notify_one();
            self.asked = true;
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((item, permit))) => {
                // Taken by the transport: no longer ours to budget.
                drop(permit);
                self.asked = false;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(
                self.abort
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .map(Err),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Splits `entries` (the first of index `start`) into pages of at most
/// [`PAGE_BYTES`] (and at least one entry each).
pub fn split_pages(start: u64, entries: Vec<Vec<u8>>) -> Vec<(u64, Vec<Vec<u8>>, usize)> {
    let mut pages = Vec::new();
    let mut at = start;
    let mut page = Vec::new();
    let mut bytes = 0;
    for e in entries {
        if !page.is_empty() && bytes + e.len() + 8 > PAGE_BYTES {
            let n = page.len() as u64;
            pages.push((at, std::mem::take(&mut page), bytes));
            at += n;
            bytes = 0;
        }
        bytes += e.len() + 8;
        page.push(e);
    }
    if !page.is_empty() {
        pages.push((at, page, bytes));
    }
    pages
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pages_stay_under_the_byte_bound() {
        let entries = vec![vec![0u8; 65_535]; 256];
        let pages = split_pages(512, entries);
        assert!(pages.len() >= 5);
        let mut next = 512;
        for (start, page, bytes) in &pages {
            assert_eq!(*start, next);
            assert!(*bytes <= PAGE_BYTES);
            assert_eq!(*bytes, page.len() * (65_535 + 8));
            next += page.len() as u64;
        }
        assert_eq!(next, 512 + 256);
    }

    #[tokio::test]
    async fn a_full_budget_is_refused_by_name_and_a_failed_stream_says_why() {
        use tokio_stream::StreamExt as _;
        let b = ResponseBudget::new(10 << 20).with_wait(Duration::from_millis(10));
        let held = b.reserve(10 << 20).await.unwrap();
        let e = b.reserve(1).await.unwrap_err();
        assert_eq!(e.kind(), crate::api::Kind::ResourceExhausted);
        assert!(e.to_string().contains("10 MiB"), "{e:?}");
        drop(held);
        let slots = StreamSlots::new(1);
        let (mut tx, mut rx) = channel::<u32>(slots.take().unwrap());
        let e = slots.take().unwrap_err();
        assert!(e.to_string().contains("1 entry streams are open"), "{e:?}");
        let producer = tokio::spawn(async move {
            // Nothing is produced before it is asked for.
            assert!(tx.wanted().await);
            assert!(tx.send(1, b.reserve(1).await.unwrap()).await);
            tx.fail(ApiError::from(crate::proofs::ProofError::Damaged(
                "x".into(),
            )));
        });
        assert_eq!(rx.next().await.unwrap().unwrap(), 1);
        producer.await.unwrap();
        assert_eq!(
            rx.next().await.unwrap().unwrap_err().kind(),
            crate::api::Kind::DataLoss
        );
        assert!(rx.next().await.is_none());
    }
}
