//! One operation as a child stream: `on_subscribe`, then `Executor::execute_stream`, with a
//! guard that completes it exactly once when it is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use async_graphql::{Data, ErrorExtensions, Executor, Request, Response, ServerError, Value};
use futures_core::Stream;
use futures_core::stream::BoxStream;

use crate::documents::Documents;
use crate::gauges::OperationKind;
use crate::lifecycle::run_guarded;
use crate::share::{SharedItem, SharedSubscription, Shares};
use crate::token::{OperationToken, TokenInner, check_leak};
use crate::topics::{Missed, Resume, resume_of};
use crate::{ConnectionInfo, EndReason, Gauges, Hooks, ShareKey};

/// What an operation stream yields to the connection.
#[derive(Debug)]
pub(crate) enum OpItem {
    Response(Response),
    Refused(Vec<ServerError>),
    /// A shared execution's event, serialized once, with its topic event id.
    Shared(Arc<str>, Option<Arc<str>>),
    /// A shared execution's first result was a request error.
    RequestError(Arc<[ServerError]>),
}

impl OpItem {
    /// The item as the operation policy reads it.
    pub(crate) fn event(&self) -> subscope_protocol::OperationEvent<'_> {
        use subscope_protocol::OperationEvent;
        match self {
            Self::Response(response) => OperationEvent::Response(response),
            Self::Refused(errors) => OperationEvent::Refused(errors),
            Self::Shared(payload, _) => OperationEvent::Serialized(payload),
            Self::RequestError(errors) => OperationEvent::RequestError(errors),
        }
    }

    /// The id of the topic event a result came from (`extensions.eventId`): SSE's `id:`.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn event_id(&self) -> Option<&str> {
        match self {
            Self::Response(response) => match response.extensions.get("eventId") {
                Some(Value::String(id)) => Some(id),
                _ => None,
            },
            Self::Shared(_, id) => id.as_deref(),
            _ => None,
        }
    }
}

/// How an operation may join a shared execution.
#[derive(Clone)]
pub(crate) struct Sharing {
    pub(crate) shares: Arc<Shares>,
    /// `Config::share_identical`.
    pub(crate) identical: bool,
    /// Parsed documents, shared by every operation of the server (`Config::document_cache`).
    pub(crate) documents: Arc<Documents>,
}

type HookFuture = Pin<Box<dyn Future<Output = Result<Request, Vec<ServerError>>> + Send>>;

enum Stage {
    Subscribing(HookFuture),
    /// Boxed: the other stages are a pointer or two.
    Running(Box<Running>),
    Shared(SharedSubscription),
    Done,
}

/// An executing operation's stream, and what it owes a client that asked to resume.
struct Running {
    stream: BoxStream<'static, Response>,
    /// Set while a resume may still need the server to say a gap (no resolver handled it):
    /// checked at the first result or the end, whichever comes first.
    resume: Option<Resume>,
    /// A result held back behind the gap said before it.
    held: Option<Response>,
    ended: bool,
}

/// Stamps each result with the id of the topic event it was resolved from
/// (`extensions.eventId`), as the topic subscription recorded it in `resume`.
fn stamped(stream: BoxStream<'static, Response>, resume: Resume) -> BoxStream<'static, Response> {
    Box::pin(futures_lite::StreamExt::map(stream, move |mut response| {
        if let Some(id) = resume.take_current() {
            response
                .extensions
                .insert("eventId".to_owned(), Value::String(id.to_string()));
        }
        response
    }))
}

/// What the server says for a resume no event source handled: `RESUME_GAP`, nothing
/// retained, then the results.
fn unhandled_gap(gauges: &Gauges) -> OpItem {
    gauges.count_resume_gap();
    tracing::info!("resume gap: the subscription has no history; said to the subscriber");
    let gap = Missed::ResumeGap { oldest: None };
    let mut error = ServerError::new(gap.message(), None);
    error.extensions = gap.extend().extensions;
    let json = subscope_protocol::policy::result_json(&Response::from_errors(vec![error]));
    OpItem::Shared(Arc::from(json), None)
}

/// A live operation. Field order matters: the stream is dropped before the guard, so
/// `on_complete` runs after the user's stream (and everything it owns) is gone.
pub(crate) struct Operation<H: Hooks> {
    /// Entered whenever the operation is polled, so resolver logs carry it.
    span: tracing::Span,
    stage: Stage,
    execute: Box<dyn FnOnce(Request) -> BoxStream<'static, Response> + Send>,
    sharing: Sharing,
    guard: CompletionGuard<H>,
}

pub(crate) struct CompletionGuard<H: Hooks> {
    span: tracing::Span,
    id: String,
    reason: EndReason,
    conn: Arc<ConnectionInfo>,
    hooks: Arc<H>,
    gauges: Arc<Gauges>,
    /// With leak detection on: the operation's token, also held by its execution state.
    token: Option<Weak<TokenInner>>,
    /// Counted in the live `subscriptions` gauge.
    subscription: bool,
}

impl<H: Hooks> Drop for CompletionGuard<H> {
    fn drop(&mut self) {
        self.gauges.close_operation();
        if self.subscription {
            self.gauges.close_subscription();
        }
        // The stream (and with it the execution state) was dropped before this guard.
        check_leak(self.token.as_ref(), &self.gauges);
        self.span
            .record("end_reason", tracing::field::debug(&self.reason));
        tracing::debug!(parent: &self.span, reason = ?self.reason, "operation ended");
        if self.reason == EndReason::ResponseTooLarge {
            self.gauges.count_too_large();
        }
        let (hooks, conn, id, reason) = (&self.hooks, &self.conn, &self.id, &self.reason);
        run_guarded(&self.gauges, "on_complete", conn.id, || {
            hooks.on_complete(conn, id, reason);
        });
    }
}

impl<H: Hooks> Operation<H> {
    #[allow(clippy::too_many_arguments)] // a private constructor fed from one call site
    pub(crate) fn start<E: Executor>(
        id: String,
        mut request: Request,
        detect_leaks: bool,
        executor: &E,
        session: Option<Arc<Data>>,
        conn: &Arc<ConnectionInfo>,
        hooks: &Arc<H>,
        gauges: &Arc<Gauges>,
        sharing: &Sharing,
    ) -> Self {
        gauges.open_operation();
        let token = detect_leaks.then(|| {
            let token = OperationToken(Arc::new(TokenInner {
                conn: conn.id,
                id: id.clone(),
                operation_name: request.operation_name.clone(),
            }));
            let weak = Arc::downgrade(&token.0);
            request.data.insert(token);
            weak
        });
        let span = tracing::debug_span!(
            "operation",
            conn = conn.id,
            id = %id,
            operation_name = request.operation_name.as_deref().unwrap_or(""),
            transport = %conn.transport,
            end_reason = tracing::field::Empty,
        );
        let hook: HookFuture = {
            let hooks = Arc::clone(hooks);
            let conn = Arc::clone(conn);
            let id = id.clone();
            Box::pin(async move { hooks.on_subscribe(&conn, &id, request).await })
        };
        let executor = executor.clone();
        Self {
            span: span.clone(),
            stage: Stage::Subscribing(hook),
            execute: Box::new(move |request| executor.execute_stream(request, session)),
            sharing: sharing.clone(),
            guard: CompletionGuard {
                span,
                id,
                // What a drop without an explicit reason means: the owner was dropped.
                reason: EndReason::Dropped,
                conn: Arc::clone(conn),
                hooks: Arc::clone(hooks),
                gauges: Arc::clone(gauges),
                token,
                subscription: false,
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
        let _entered = this.span.enter();
        loop {
            match &mut this.stage {
                Stage::Subscribing(hook) => match hook.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(mut request)) => {
                        let checked =
                            crate::variables::check(&mut request, &this.sharing.documents);
                        let missing = checked.missing;
                        if !missing.is_empty() {
                            // A request error: one response with no data and pathless errors,
                            // which the machine turns into `error` (no `complete`).
                            this.stage = Stage::Done;
                            return Poll::Ready(Some(OpItem::Response(Response::from_errors(
                                missing,
                            ))));
                        }
                        let after = match resume_of(&request) {
                            Ok(after) => after,
                            Err(err) => {
                                // A request error, like a malformed variable: the id is
                                // free again.
                                this.stage = Stage::Done;
                                return Poll::Ready(Some(OpItem::Response(Response::from_errors(
                                    vec![ServerError::new(err.to_string(), None)],
                                ))));
                            }
                        };
                        if let Some(kind) = checked.kind {
                            this.guard.gauges.count_kind(kind);
                            this.guard.subscription = kind == OperationKind::Subscription;
                        }
                        let resume = this.guard.subscription.then(|| Resume::new(after));
                        if let Some(resume) = &resume {
                            request.data.insert(resume.clone());
                        }
                        let execute = std::mem::replace(
                            &mut this.execute,
                            Box::new(|_| Box::pin(futures_lite::stream::empty())),
                        );
                        // Only subscriptions share: a query or mutation (side effects!)
                        // always executes by itself.
                        // A resume is the client's own: it never joins a shared execution.
                        let key = (this.guard.subscription && after.is_none())
                            .then(|| {
                                this.guard
                                    .hooks
                                    .share_key(&this.guard.conn, &request)
                                    .or_else(|| {
                                        this.sharing.identical.then(|| ShareKey::of(&request))
                                    })
                            })
                            .flatten();
                        this.stage = match key {
                            Some(key) => {
                                // The upstream judges leaks of the request it executes; a
                                // joiner's request is never executed.
                                let token = this.guard.token.take();
                                let shares = Arc::clone(&this.sharing.shares);
                                Stage::Shared(shares.join(key, token, move || match resume {
                                    Some(resume) => stamped(execute(request), resume),
                                    None => execute(request),
                                }))
                            }
                            None => {
                                let stream = execute(request);
                                Stage::Running(Box::new(Running {
                                    stream: match &resume {
                                        Some(r) => stamped(stream, r.clone()),
                                        None => stream,
                                    },
                                    resume: resume.filter(|_| after.is_some()),
                                    held: None,
                                    ended: false,
                                }))
                            }
                        };
                    }
                    Poll::Ready(Err(errors)) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Some(OpItem::Refused(errors)));
                    }
                },
                Stage::Running(run) => {
                    if let Some(held) = run.held.take() {
                        return Poll::Ready(Some(OpItem::Response(held)));
                    }
                    let polled = if run.ended {
                        Poll::Ready(None)
                    } else {
                        run.stream.as_mut().poll_next(cx)
                    };
                    return match polled {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(item) => {
                            // The resolver has run: if nothing took the resume, say the
                            // gap before its first result (not before a request error).
                            let gap = run.resume.take().is_some_and(|r| {
                                r.unhandled()
                                    && !item
                                        .as_ref()
                                        .is_some_and(subscope_protocol::policy::is_request_error)
                            });
                            match item {
                                Some(r) if gap => {
                                    run.held = Some(r);
                                    Poll::Ready(Some(unhandled_gap(&this.guard.gauges)))
                                }
                                Some(r) => Poll::Ready(Some(OpItem::Response(r))),
                                None if gap => {
                                    run.ended = true;
                                    Poll::Ready(Some(unhandled_gap(&this.guard.gauges)))
                                }
                                None => {
                                    this.stage = Stage::Done;
                                    Poll::Ready(None)
                                }
                            }
                        }
                    };
                }
                Stage::Shared(sub) => {
                    return match Pin::new(sub).poll_next(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Some(SharedItem::Next(p, id))) => {
                            Poll::Ready(Some(OpItem::Shared(p, id)))
                        }
                        Poll::Ready(Some(SharedItem::RequestError(e))) => {
                            Poll::Ready(Some(OpItem::RequestError(e)))
                        }
                        Poll::Ready(Some(SharedItem::Lagged(e))) => {
                            Poll::Ready(Some(OpItem::Response(Response::from_errors(vec![e]))))
                        }
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
