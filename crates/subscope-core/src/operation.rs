//! One operation as a child stream: `on_subscribe`, then `Executor::execute_stream`, with a
//! guard that completes it exactly once when it is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures_core::Stream;
use futures_core::stream::BoxStream;

use crate::{ConnectionInfo, EndReason, Gauges, Hooks};

/// What an operation stream yields to the connection.
#[derive(Debug)]
pub(crate) enum OpItem {
    Response(Response),
    Refused(Vec<ServerError>),
}

type HookFuture = Pin<Box<dyn Future<Output = Result<Request, Vec<ServerError>>> + Send>>;

enum Stage {
    Subscribing(HookFuture),
    Running(BoxStream<'static, Response>),
    Done,
}

/// A live operation. Field order matters: the stream is dropped before the guard, so
/// `on_complete` runs after the user's stream (and everything it owns) is gone.
pub(crate) struct Operation<H: Hooks> {
    stage: Stage,
    execute: Box<dyn FnOnce(Request) -> BoxStream<'static, Response> + Send>,
    guard: CompletionGuard<H>,
}

pub(crate) struct CompletionGuard<H: Hooks> {
    id: String,
    reason: EndReason,
    conn: Arc<ConnectionInfo>,
    hooks: Arc<H>,
    gauges: Arc<Gauges>,
}

impl<H: Hooks> Drop for CompletionGuard<H> {
    fn drop(&mut self) {
        self.gauges.close_subscription();
        tracing::debug!(
            conn = self.conn.id,
            id = %self.id,
            reason = ?self.reason,
            "operation ended"
        );
        self.hooks.on_complete(&self.conn, &self.id, &self.reason);
    }
}

impl<H: Hooks> Operation<H> {
    pub(crate) fn start<E: Executor>(
        id: String,
        request: Request,
        executor: &E,
        session: Option<Arc<Data>>,
        conn: &Arc<ConnectionInfo>,
        hooks: &Arc<H>,
        gauges: &Arc<Gauges>,
    ) -> Self {
        gauges.open_subscription();
        let hook: HookFuture = {
            let hooks = Arc::clone(hooks);
            let conn = Arc::clone(conn);
            let id = id.clone();
            Box::pin(async move { hooks.on_subscribe(&conn, &id, request).await })
        };
        let executor = executor.clone();
        Self {
            stage: Stage::Subscribing(hook),
            execute: Box::new(move |request| executor.execute_stream(request, session)),
            guard: CompletionGuard {
                id,
                // What a drop without an explicit reason means: the owner was dropped.
                reason: EndReason::Dropped,
                conn: Arc::clone(conn),
                hooks: Arc::clone(hooks),
                gauges: Arc::clone(gauges),
            },
        }
    }

    /// Drops the operation now, completing it with `reason`.
    pub(crate) fn finish(mut self, reason: EndReason) {
        self.guard.reason = reason;
        drop(self);
    }
}

impl<H: Hooks> Unpin for Operation<H> {}

impl<H: Hooks> Stream for Operation<H> {
    type Item = OpItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OpItem>> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::Subscribing(hook) => match hook.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(request)) => {
                        let execute = std::mem::replace(
                            &mut this.execute,
                            Box::new(|_| Box::pin(futures_lite::stream::empty())),
                        );
                        this.stage = Stage::Running(execute(request));
                    }
                    Poll::Ready(Err(errors)) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Some(OpItem::Refused(errors)));
                    }
                },
                Stage::Running(stream) => {
                    return match stream.as_mut().poll_next(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Some(r)) => Poll::Ready(Some(OpItem::Response(r))),
                        Poll::Ready(None) => {
                            this.stage = Stage::Done;
                            Poll::Ready(None)
                        }
                    };
                }
                Stage::Done => return Poll::Ready(None),
            }
        }
    }
}
