//! [`EventFilter`]: which events a subscription delivers, by event type and by stream-id prefix
//! (a category such as `order-`). Applied by the store after gap detection: a position the
//! filter leaves out still counts as passed, so a reader moves its cursor over it.

use super::RecordedEvent;

/// A subscription's filter. The default passes every event.
///
/// An event passes when its type is one of `event_types` (or that list is empty) and its
/// stream id starts with one of `stream_prefixes` (or that list is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    event_types: Vec<String>,
    stream_prefixes: Vec<String>,
}

impl EventFilter {
    /// A filter that passes every event.
    pub fn all() -> EventFilter {
        EventFilter::default()
    }

    /// Passes only events of these types (added to those given before).
    pub fn event_types<I, S>(mut self, types: I) -> EventFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Passes only events whose stream id starts with `prefix` (or with another prefix given
    /// before).
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> EventFilter {
        self.stream_prefixes.push(prefix.into());
        self
    }

    /// Whether it passes every event.
    pub fn is_all(&self) -> bool {
        self.event_types.is_empty() && self.stream_prefixes.is_empty()
    }

    /// The event types it passes (empty: any).
    pub fn types(&self) -> &[String] {
        &self.event_types
    }

    /// The stream-id prefixes it passes (empty: any).
    pub fn prefixes(&self) -> &[String] {
        &self.stream_prefixes
    }

    /// Whether an event of `event_type` in stream `stream` passes.
    pub fn passes(&self, stream: &str, event_type: &str) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && (self.stream_prefixes.is_empty() || self.stream_prefixes.iter().any(|p| stream.starts_with(p.as_str())))
    }

    /// Whether `event` passes.
    pub fn passes_event(&self, event: &RecordedEvent) -> bool {
        self.passes(event.stream.as_str(), &event.event_type)
    }
}

/// What a filtered read returns: the events that passed, and how far it read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilteredRead {
    /// The events that passed the filter, in position order.
    pub events: Vec<RecordedEvent>,
    /// Every position up to this one was read (delivered above or left out by the filter), or
    /// is the `after` the read started from: the next read starts after it.
    pub passed: u64,
}
