//! One tower `Layer` + `Service` for every check the front makes before a call proceeds.
//!
//! A [`Check`] looks at the request, may add a proof to its extensions, and either lets it
//! through or answers it. The service keeps `type Error = S::Error` and forwards
//! `poll_ready`; the inner service that was polled ready is the one that is called (the
//! `mem::replace` idiom), as tower requires. The shape is tower-http's `ValidateRequest`,
//! made async.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service};

/// A check made before a request reaches the next stage. Shared by every request (an `Arc`),
/// never cloned per request.
pub trait Check: Send + Sync + 'static {
    /// `Ok` lets the request through (perhaps with a proof in its extensions); `Err` is the
    /// answer.
    fn check(&self, req: &mut Request) -> impl Future<Output = Result<(), Response>> + Send;
}

/// Applies a [`Check`].
#[derive(Debug)]
pub struct CheckLayer<C> {
    check: Arc<C>,
}

impl<C> Clone for CheckLayer<C> {
    fn clone(&self) -> Self {
        CheckLayer {
            check: self.check.clone(),
        }
    }
}

impl<C> CheckLayer<C> {
    /// A layer making `check`.
    pub fn new(check: C) -> Self {
        CheckLayer {
            check: Arc::new(check),
        }
    }
}

impl<S, C> Layer<S> for CheckLayer<C> {
    type Service = CheckService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service of a [`CheckLayer`].
#[derive(Debug)]
pub struct CheckService<S, C> {
    inner: S,
    check: Arc<C>,
}

impl<S: Clone, C> Clone for CheckService<S, C> {
    fn clone(&self) -> Self {
        CheckService {
            inner: self.inner.clone(),
            check: self.check.clone(),
        }
    }
}

// === impl CheckService ===

impl<S, C> Service<Request> for CheckService<S, C>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Check,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        Box::pin(async move {
            match check.check(&mut req).await {
                Ok(()) => inner.call(req).await,
                Err(answer) => Ok(answer),
            }
        })
    }
}
