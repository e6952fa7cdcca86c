//! One server-wide budget of bytes in flight: request bodies being received
//! and answers being sent. A body reserves each frame's bytes as it arrives
//! (waiting for room up to [`MAX_WAIT`], or its stall timeout when that is
//! shorter; meanwhile HTTP/2 flow control holds the sender back) and keeps
//! them until its request is answered; a body that sends nothing for its
//! stall timeout is ended. So stalled or oversized uploads cannot grow
//! memory past the budget or hold it for long: a frame that finds no room
//! in time is refused `RESOURCE_EXHAUSTED` naming the budget, and a stalled
//! body ends with `DEADLINE_EXCEEDED` naming the timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a request body's frame waits for room in the budget.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// Bytes in flight, server-wide. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    bytes: usize,
}

/// The budget is in use.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the server's budget of {mib} MiB for bytes in flight (request bodies and entry pages) is in use; retry later")]
pub struct Exhausted {
    /// The budget, MiB.
    pub mib: usize,
}

impl ByteBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        ByteBudget {
            sem: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            bytes,
        }
    }

    /// The budget, bytes.
    pub fn capacity(&self) -> usize {
        self.bytes
    }

    /// Bytes reserved now: by request bodies still being received or not
    /// yet answered, and by entry pages not yet sent. 0 when nothing is in
    /// flight.
    pub fn in_use(&self) -> usize {
        self.bytes
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.sem.available_permits())
    }

    fn permits(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.clamp(1, self.bytes.max(1))).unwrap_or(u32::MAX)
    }

    fn exhausted(&self) -> Exhausted {
        Exhausted {
            mib: self.bytes >> 20,
        }
    }

    /// Reserves `bytes` (at most the whole budget) at once, or not at all.
    ///
    /// # Errors
    /// [`Exhausted`] when there is no room now.
    pub fn try_reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Exhausted> {
        Arc::clone(&self.sem)
            .try_acquire_many_owned(self.permits(bytes))
            .map_err(|_| self.exhausted())
    }

    /// Reserves `bytes` (at most the whole budget), waiting up to `wait`
    /// for room.
    ///
    /// # Errors
    /// [`Exhausted`] when no room came in time.
    pub async fn reserve(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Exhausted> {
        let acquire = Arc::clone(&self.sem).acquire_many_owned(self.permits(bytes));
        match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(self.exhausted()),
        }
    }
}

/// A tower layer that puts every request body under a [`ByteBudget`] and a
/// stall timeout.
#[derive(Clone, Debug)]
pub struct RequestBudgetLayer {
    budget: ByteBudget,
    stall: Duration,
}

impl RequestBudgetLayer {
    /// Bodies reserve from `budget`; one that sends no bytes for `stall`
    /// is ended.
    pub fn new(budget: ByteBudget, stall: Duration) -> Self {
        RequestBudgetLayer { budget, stall }
    }
}

impl<S> tower::Layer<S> for RequestBudgetLayer {
    type Service = RequestBudget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBudget {
            inner,
            budget: self.budget.clone(),
            stall: self.stall,
        }
    }
}

/// The service the layer wraps.
#[derive(Clone, Debug)]
pub struct RequestBudget<S> {
    inner: S,
    budget: ByteBudget,
    stall: Duration,
}

/// What a request holds of the budget: one permit, grown by every frame.
type Held = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

impl<S, B, R> tower::Service<http::Request<B>> for RequestBudget<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let held: Held = Arc::default();
        let (parts, body) = req.into_parts();
        let body = Budgeted {
            inner: Box::pin(body),
            budget: self.budget.clone(),
            held: Arc::clone(&held),
            stall: self.stall,
            timer: None,
            waiting: None,
        };
        let fut = self.inner.call(http::Request::from_parts(
            parts,
            tonic::body::Body::new(body),
        ));
        Box::pin(async move {
            let out = fut.await;
            // Answered: the request's bytes are no longer in flight.
            drop(held);
            out
        })
    }
}

type Reserving = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, Exhausted>> + Send>>;

/// A request body under the budget.
struct Budgeted<B> {
    inner: Pin<Box<B>>,
    budget: ByteBudget,
    held: Held,
    stall: Duration,
    /// Armed when the body first has nothing to give (most small requests
    /// arrive whole and never need it), reset by every frame after.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame that found no room, and the wait for it.
    waiting: Option<(Frame<Bytes>, Reserving)>,
}

impl<B> Budgeted<B> {
    fn hold(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            // Permits of one budget: merged, they are released together.
            Some(p) => p.merge(permit),
            None => *held = Some(permit),
        }
    }

    fn passed(&mut self, frame: Frame<Bytes>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(t) = self.timer.as_mut() {
            t.as_mut().reset(tokio::time::Instant::now() + self.stall);
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn exhausted(e: Exhausted) -> BoxError {
    Box::new(tonic::Status::resource_exhausted(e.to_string()))
}

impl<B> Body for Budgeted<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some((_, reserving)) = this.waiting.as_mut() {
            return match reserving.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.waiting = None;
                    Poll::Ready(Some(Err(exhausted(e))))
                }
                Poll::Ready(Ok(permit)) => {
                    this.hold(permit);
                    match this.waiting.take() {
                        Some((frame, _)) => this.passed(frame),
                        None => Poll::Ready(None),
                    }
                }
            };
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if len == 0 {
                    return this.passed(frame);
                }
                if let Ok(p) = this.budget.try_reserve(len) {
                    this.hold(p);
                    return this.passed(frame);
                }
                // No room now: wait for it, as long as a stall may last, at
                // most MAX_WAIT.
                let budget = this.budget.clone();
                let wait = this.stall.min(MAX_WAIT);
                let reserving: Reserving = Box::pin(async move { budget.reserve(len, wait).await });
                this.waiting = Some((frame, reserving));
                // Poll the wait once now, so that it registers.
                self.poll_frame(cx)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.stall)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(
                    tonic::Status::deadline_exceeded(format!(
                        "the request body sent nothing for {} ms; the request is ended",
                        this.stall.as_millis()
                    )),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
