//! One tower `Layer` + `Service` for every check the front makes before a call proceeds.
//!
//! A [`Check`] looks at the request, may add a proof to its extensions, and either lets it
//! through or answers it. The service keeps `type Error = S::Error` and forwards
//! `poll_ready`; the inner service that was polled ready is the one that is called (the
//! `mem::replace` idiom), as tower requires. The shape is tower-http's `ValidateRequest`,
//! made async.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service};

/// A check made before a request reaches the next stage.
pub trait Check: Clone + Send + Sync + 'static {
    /// `Ok` lets the request through (perhaps with a proof in its extensions); `Err` is the
    /// answer.
    fn check(&self, req: &mut Request) -> impl Future<Output = Result<(), Response>> + Send;
}

/// Applies a [`Check`].
#[derive(Clone, Debug)]
pub struct CheckLayer<C> {
    check: C,
}

impl<C> CheckLayer<C> {
    /// A layer making `check`.
    pub fn new(check: C) -> Self {
        CheckLayer { check }
    }
}

impl<S, C: Clone> Layer<S> for CheckLayer<C> {
    type Service = CheckService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service of a [`CheckLayer`].
#[derive(Clone, Debug)]
pub struct CheckService<S, C> {
    inner: S,
    check: C,
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
