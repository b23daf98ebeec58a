//! [`DeadLetter`] and [`Failure`]: an event that failed for good, and why; and the sink that
//! dead letters go to.

use std::collections::VecDeque;
use std::fmt;

use super::containment::Containment;
use super::counters::SharedCounter;
use super::hooks::PanicSite;
use crate::sync::Mutex;
use crate::{Event, StreamId, StreamKey};

/// Why handling an event failed. The texts come from the handler's error's `Display` or the
/// panic's message; they are untrusted and are only ever logged as escaped fields (R-SEC-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `init` returned an error while making the entity's state.
    Init(String),
    /// `handle` returned an error.
    Handler(String),
    /// `init` or `handle` panicked; the text is the panic message.
    Panic(String),
}

impl Failure {
    /// The failure's message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Init(m) | Failure::Handler(m) | Failure::Panic(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Init(m) => write!(f, "init failed: {m:?}"),
            Failure::Handler(m) => write!(f, "handler failed: {m:?}"),
            Failure::Panic(m) => write!(f, "panicked: {m:?}"),
        }
    }
}

impl std::error::Error for Failure {}

/// An event that failed `max_attempts` times, with the last failure.
///
/// Given to the `on_dead_letter` hook; without a hook, kept in the engine's dead-letter buffer
/// (see [`Engine::take_dead_letters`](crate::Engine::take_dead_letters)).
pub struct DeadLetter<P, K = StreamId> {
    /// The event, handed back.
    pub event: Event<P, K>,
    /// The last attempt's failure.
    pub failure: Failure,
    /// How many times the handler was called for it (the first call included).
    pub attempts: u32,
}

impl<P, K: fmt::Debug> fmt::Debug for DeadLetter<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("stream", self.event.stream())
            .field("failure", &self.failure)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The `on_dead_letter` hook.
pub(crate) type DeadLetterHook<P, K> = Box<dyn Fn(DeadLetter<P, K>) + Send + Sync>;

/// Where dead letters go: the user's hook, or else a bounded buffer that
/// [`Engine::take_dead_letters`](crate::Engine::take_dead_letters) empties.
pub(crate) struct DeadLetterSink<P, K> {
    hook: Option<DeadLetterHook<P, K>>,
    /// The default sink: the newest `capacity` letters.
    buffer: Mutex<VecDeque<DeadLetter<P, K>>>,
    capacity: usize,
    /// Letters the full buffer dropped (never with a hook).
    discarded: SharedCounter,
}

impl<P, K> fmt::Debug for DeadLetterSink<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("hook", &self.hook.is_some())
            .field("capacity", &self.capacity)
            .field("discarded", &self.discarded.get())
            .finish_non_exhaustive()
    }
}

impl<P, K: StreamKey> DeadLetterSink<P, K> {
    /// A sink handing letters to `hook`, or keeping the newest `capacity` without one.
    pub(crate) fn new(hook: Option<DeadLetterHook<P, K>>, capacity: usize) -> DeadLetterSink<P, K> {
        DeadLetterSink {
            hook,
            buffer: Mutex::new(VecDeque::new()),
            capacity,
            discarded: SharedCounter::default(),
        }
    }

    /// Logs `letter` and hands it to the hook (contained), or to the buffer; a letter the
    /// full buffer gives up is disposed of outside its lock (contained: its payload is the
    /// user's).
    pub(crate) fn deliver(&self, letter: DeadLetter<P, K>, containment: &Containment<K>) {
        log::warn!(
            stream:% = letter.event.stream(),
            attempts = letter.attempts,
            failure:? = letter.failure;
            "humpyard dead-lettered an event of stream {:?} after {} attempt{}: {}",
            letter.event.stream().to_string(),
            letter.attempts,
            if letter.attempts == 1 { "" } else { "s" },
            letter.failure
        );
        if let Some(hook) = &self.hook {
            let stream = letter.event.stream().clone();
            let _ = containment.run(PanicSite::Hook, Some(&stream), || hook(letter));
            return;
        }
        let given_up = {
            let mut buffer = self.buffer.lock();
            if self.capacity == 0 {
                Some(letter)
            } else {
                let oldest = if buffer.len() >= self.capacity {
                    buffer.pop_front()
                } else {
                    None
                };
                buffer.push_back(letter);
                oldest
            }
        };
        if let Some(letter) = given_up {
            self.discarded.incr();
            let stream = letter.event.stream().clone();
            containment.dispose(Some(&stream), letter);
        }
    }

    /// Takes the letters the buffer keeps.
    pub(crate) fn take(&self) -> Vec<DeadLetter<P, K>> {
        self.buffer.lock().drain(..).collect()
    }

    /// Letters the full buffer dropped.
    pub(crate) fn discarded(&self) -> u64 {
        self.discarded.get()
    }

    /// Disposes of the hook and the kept letters (contained), for the engine's end.
    pub(crate) fn dispose_all(&mut self, containment: &Containment<K>) {
        if let Some(hook) = self.hook.take() {
            containment.dispose(None, hook);
        }
        for letter in self.take() {
            let stream = letter.event.stream().clone();
            containment.dispose(Some(&stream), letter);
        }
    }
}
