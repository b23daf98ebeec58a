//! [`AsyncStore`]: any [`EventStore`] called from async code without blocking an executor
//! thread.
//!
//! Both stores are synchronous: the Postgres store blocks its caller on the network (and its
//! driver panics with "Cannot start a runtime from within a runtime" when called on a tokio
//! worker thread). An `AsyncStore` runs each call on threads of its own and hands the result
//! back through a channel whose receive is a future (flume's `recv_async`): the calling task
//! is pending meanwhile, and no executor thread waits. No async runtime is a dependency; any
//! executor drives the futures.
//!
//! # Invariants
//!
//! - Calls queue in a bounded channel (`queue` places); a caller whose call finds the queue
//!   full is pending until a place frees (backpressure, not an unbounded backlog).
//! - Every call runs to its end once queued, even if its future is dropped meanwhile: a
//!   dropped append may still commit, exactly as a synchronous call cut off by a timeout may.
//!   Retrying the same events (same ids) is safe: the store returns the first append's result
//!   (see the store contract's retries).
//! - A call that panics is contained on the store's thread and comes back as
//!   [`StoreError::Panicked`]; the thread goes on with the next call.
//! - The threads end when the last clone of the `AsyncStore` is dropped and the queue is
//!   empty; dropping never blocks (it may be dropped inside a task).

use std::fmt;
use std::future::Future;

use crate::pipeline::{contain, dispose};
use crate::store::{Appended, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use crate::sync::Arc;
use crate::StreamId;

/// A call queued for the store's threads.
type Job = Box<dyn FnOnce(&dyn EventStore) + Send>;

/// An [`EventStore`] whose operations are futures that never block an executor thread: each
/// call runs on the `AsyncStore`'s own threads. Cheap to clone; clones share the threads.
///
/// ```
/// use std::sync::Arc;
/// use humpyard::store::{AsyncStore, ExpectedVersion, InMemoryStore, NewEvent};
/// use humpyard::StreamId;
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         match f.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
/// #             std::task::Poll::Ready(v) => return v,
/// #             std::task::Poll::Pending => std::thread::park(),
/// #         }
/// #     }
/// # }
///
/// let store = AsyncStore::new(Arc::new(InMemoryStore::new()), 2)?;
/// block_on(async {
///     let order = StreamId::new("order-1")?;
///     let event = NewEvent::new("placed", serde_json::json!({ "total": 12 }));
///     store.append(order.clone(), ExpectedVersion::NoStream, vec![event]).await?;
///     // Any other operation, on the store's thread:
///     let events = store.call(move |s| s.read_stream(&order, 0, 100)).await?;
///     assert_eq!(events.len(), 1);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AsyncStore {
    store: Arc<dyn EventStore>,
    jobs: flume::Sender<Job>,
    threads: usize,
}

impl AsyncStore {
    /// Runs `store`'s calls on `threads` threads of its own (at least 1; for the Postgres
    /// store, up to its pool size is useful), with up to `64 × threads` calls queued.
    ///
    /// # Errors
    ///
    /// The operating system's error if a thread cannot be started (threads started before it
    /// end at once).
    pub fn new(store: Arc<dyn EventStore>, threads: usize) -> std::io::Result<AsyncStore> {
        let threads = threads.max(1);
        let (jobs, queue) = flume::bounded::<Job>(64 * threads);
        for n in 0..threads {
            let queue = queue.clone();
            let store = store.clone();
            std::thread::Builder::new()
                .name(format!("humpyard-store-{n}"))
                .spawn(move || {
                    // Ends when every sender is gone and the queue is empty.
                    while let Ok(job) = queue.recv() {
                        job(&*store);
                    }
                })?;
        }
        Ok(AsyncStore { store, jobs, threads })
    }

    /// The synchronous store behind it (for use on threads that may block).
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Runs `operation` on one of the store's threads; the future resolves with its result.
    /// Any [`EventStore`] operation, as `store.call(move |s| s.read_all(after, 100))`.
    ///
    /// The future is `'static` and `Send` (it may be spawned). Dropping it before it resolves
    /// does not stop a call already queued: it runs to its end.
    ///
    /// # Errors
    ///
    /// What `operation` returns; [`StoreError::Panicked`] if it panicked.
    pub fn call<T, F>(&self, operation: F) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&dyn EventStore) -> Result<T, StoreError> + Send + 'static,
    {
        let jobs = self.jobs.clone();
        async move {
            let (reply, outcome) = flume::bounded(1);
            let job: Job = Box::new(move |store: &dyn EventStore| {
                let result = contain(|| operation(store)).unwrap_or_else(|message| Err(StoreError::Panicked(message)));
                // The send wakes the caller's task (its executor's code), and the caller may have
                // gone (its future dropped): then the result is dropped here. Both contained.
                let _ = contain(move || {
                    if let Err(unsent) = reply.send(result) {
                        dispose(unsent.into_inner());
                    }
                });
            });
            if jobs.send_async(job).await.is_err() {
                // Every thread has ended, which contained calls never make them do.
                return Err(StoreError::Panicked("the store's threads have ended".to_owned()));
            }
            match outcome.recv_async().await {
                Ok(result) => result,
                // The job was dropped unrun: only if its thread died, which `contain` prevents.
                Err(_) => Err(StoreError::Panicked(
                    "the store's thread ended before the call ran".to_owned(),
                )),
            }
        }
    }

    /// [`EventStore::append`], on the store's thread.
    ///
    /// # Errors
    ///
    /// As [`EventStore::append`].
    pub fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
        self.call(move |store| store.append(&stream, expected, events))
    }

    /// [`EventStore::read_stream`], on the store's thread.
    ///
    /// # Errors
    ///
    /// As [`EventStore::read_stream`].
    pub fn read_stream(
        &self,
        stream: StreamId,
        from_version: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send + 'static {
        self.call(move |store| store.read_stream(&stream, from_version, max))
    }

    /// [`EventStore::read_all`], on the store's thread.
    ///
    /// # Errors
    ///
    /// As [`EventStore::read_all`].
    pub fn read_all(
        &self,
        after: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send + 'static {
        self.call(move |store| store.read_all(after, max))
    }

    /// [`EventStore::load_checkpoint`], on the store's thread.
    ///
    /// # Errors
    ///
    /// As [`EventStore::load_checkpoint`].
    pub fn load_checkpoint(
        &self,
        subscriber: String,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send + 'static {
        self.call(move |store| store.load_checkpoint(&subscriber))
    }

    /// [`EventStore::save_checkpoint`], on the store's thread.
    ///
    /// # Errors
    ///
    /// As [`EventStore::save_checkpoint`].
    pub fn save_checkpoint(
        &self,
        subscriber: String,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.call(move |store| store.save_checkpoint(&subscriber, position))
    }
}

impl fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStore")
            .field("threads", &self.threads)
            .field("queued", &self.jobs.len())
            .finish_non_exhaustive()
    }
}
