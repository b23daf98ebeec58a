//! An error and its causes on one line, the way an error reporter prints them.
//!
//! humpyard's errors keep one convention (written out in `store/error.rs`'s module docs): an
//! error's `Display` says what failed at its own level, and `source()` leads to the cause, so
//! each cause is printed once. Text made from an error with `to_string()` therefore holds its
//! top level only. Where humpyard itself keeps an error as text (a parked event's message, a
//! source's last error), it keeps the whole chain: [`Chain`] joins every level's `Display` with
//! ": ", as anyhow's `{:#}` does.

use std::any::Any;
use std::error::Error;
use std::fmt;

use crate::integration::EffectError;
use crate::store::StoreError;

/// `error: cause: cause's cause: ...`, each level's `Display` in turn.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// The text of a handler's error, which is only known to be `Display`: the whole chain when it
/// is one of humpyard's own errors (the integration's handlers fail with an [`EffectError`]) or
/// a boxed error, else its `Display`.
pub(crate) fn text_of<E: fmt::Display + 'static>(error: &E) -> String {
    let any: &dyn Any = error;
    if let Some(e) = any.downcast_ref::<EffectError>() {
        Chain(e).to_string()
    } else if let Some(e) = any.downcast_ref::<StoreError>() {
        Chain(e).to_string()
    } else if let Some(e) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        Chain(&**e).to_string()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InvalidInput;
    use crate::InvalidStreamId;

    // proves R-API-2: where humpyard keeps an error as text it keeps the whole chain
    #[test]
    fn kept_text_holds_every_level_once() {
        let store = StoreError::InvalidInput(InvalidInput::SubscriberName(InvalidStreamId::Empty));
        assert_eq!(store.to_string(), "invalid subscriber name");
        assert_eq!(text_of(&store), "invalid subscriber name: stream id is empty");
        let boxed: Box<dyn Error + Send + Sync> = Box::new(store);
        assert_eq!(text_of(&boxed), "invalid subscriber name: stream id is empty");
        assert_eq!(text_of(&"plain text"), "plain text");
    }
}
