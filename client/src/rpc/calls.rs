//! How a call is made: within its deadline, and, for a read, retried
//! with a doubling backoff (and a quota's hint) while the answer says it
//! may be repeated; a call that changes the server is made once.

use std::time::Duration;

use tonic::Code;

use super::{LogRpc, RpcError};

/// Attempts of a retried call.
const ATTEMPTS: u32 = 4;

/// Whether a read refused with `code` may be repeated.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

impl LogRpc {
    /// `call`, a read, within the deadline, retried while its answer
    /// allows ([`ATTEMPTS`] in all).
    ///
    /// # Errors
    /// The last answer's status, or the deadline.
    pub(super) async fn retry<T, F, Fut>(
        &self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, RpcError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut delay = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut hint = None;
            match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if attempt < ATTEMPTS && retryable(s.code()) => {
                    // A quota's hint: retry when it says, unless that is
                    // longer than a call may take.
                    hint = retry_after(&s);
                    if hint.is_some_and(|h| h > self.timeout) {
                        return Err(status(method, &s));
                    }
                }
                Ok(Err(s)) => return Err(status(method, &s)),
                Err(_) if attempt < ATTEMPTS => {}
                Err(_) => {
                    return Err(RpcError::Status {
                        method,
                        code: Code::DeadlineExceeded,
                        message: format!("no answer within {:?}", self.timeout),
                    })
                }
            }
            tokio::time::sleep(retry_wait(delay, hint)).await;
            delay = (delay * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

/// The wait before the first retry of a call; it doubles with each
/// further attempt, up to [`MAX_BACKOFF`], and a quota's longer hint wins.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two attempts of a call, but for a quota's
/// hint.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long to wait before the next attempt of a call: the doubling
/// `backoff` or the server's longer `hint`, plus a random part of up to
/// half of that again. Callers refused together (a quota's bucket empty
/// for all of a tenant's writers at once) then come back spread over the
/// wait instead of together; none comes back before the hint.
pub fn retry_wait(backoff: Duration, hint: Option<Duration>) -> Duration {
    use rand::Rng as _;
    let base = hint.map_or(backoff, |h| h.max(backoff));
    base + base.mul_f64(rand::thread_rng().gen_range(0.0..0.5))
}

/// The server's hint of when to retry (`retry-after-ms`, sent with a
/// quota's `RESOURCE_EXHAUSTED`).
pub fn retry_after(s: &tonic::Status) -> Option<Duration> {
    let ms: u64 = s
        .metadata()
        .get("retry-after-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

/// One call that changes the server, never retried, within `timeout`: an
/// answer that does not come is an error saying the change may or may not
/// have been made.
///
/// # Errors
/// The server's status, or the deadline.
pub(super) async fn call_once<T>(
    timeout: Duration,
    method: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RpcError> {
    within(
        timeout,
        method,
        call,
        "; the change may or may not have been made: look before asking again",
    )
    .await
}

/// A read's answer within `timeout`.
pub(super) async fn call_read<T>(
    timeout: Duration,
    method: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RpcError> {
    within(timeout, method, call, "").await
}

/// `call`'s answer within `timeout`; `lost` is added to the message of
/// an answer that did not come.
async fn within<T>(
    timeout: Duration,
    method: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    lost: &str,
) -> Result<T, RpcError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(status(method, &s)),
        Err(_) => Err(RpcError::Status {
            method,
            code: tonic::Code::DeadlineExceeded,
            message: format!("no answer within {timeout:?}{lost}"),
        }),
    }
}

/// An error status as [`RpcError::Status`] (UNAVAILABLE included: it may
/// come from the transport or from the server, a fail-closed witness quorum
/// say, and the message says which).
pub(super) fn status(method: &'static str, s: &tonic::Status) -> RpcError {
    RpcError::Status {
        method,
        code: s.code(),
        message: s.message().to_owned(),
    }
}
