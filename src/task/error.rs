//! [`JoinError`]: why a green thread produced no value. Its own file, below
//! the task guard and the spawn functions that both produce it.
//!
//! It is one pointer wide (a cancellation is a null pointer, a panic's
//! message and location are boxed), so a `Result<T, JoinError>` of a small
//! `T` is two words and travels in registers. Every result of a green
//! thread, an `imap` call and a pile task passes through several such
//! returns; a 48-byte error made each of them a trip through memory, and
//! those stores and reloads were the largest single cost of an `imap` item.

use std::fmt;

/// Why a green thread produced no value: it panicked, or it was cancelled.
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let err = shardlet::spawn(async { panic!("boom") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// assert!(err.to_string().starts_with("task panicked at "));
/// # }).unwrap();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JoinError(Option<Box<Panic>>);

/// What a caught panic said, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Panic {
    message: String,
    location: Option<String>,
}

impl JoinError {
    /// A task that panicked with `message`, at `location` (`file:line:column`) when known.
    pub(crate) fn panicked(message: String, location: Option<String>) -> Self {
        JoinError(Some(Box::new(Panic { message, location })))
    }

    /// A task cancelled before it finished.
    pub(crate) const CANCELLED: JoinError = JoinError(None);

    /// Whether the task panicked; the shard caught it and went on.
    pub fn is_panic(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the task was cancelled before it finished.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_none()
    }

    /// The panic's message, if the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        self.0.as_deref().map(|p| p.message.as_str())
    }

    /// `file:line:column` of the panic, when the task panicked and it is known.
    pub fn panic_location(&self) -> Option<&str> {
        self.0.as_deref().and_then(|p| p.location.as_deref())
    }

    /// The panic's message and location (`file:line:column`, when known),
    /// taken out of the error, if the task panicked.
    pub fn into_panic(self) -> Option<(String, Option<String>)> {
        self.0.map(|p| (p.message, p.location))
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            Some(Panic {
                message,
                location: Some(at),
            }) => write!(f, "task panicked at {at}: {message}"),
            Some(Panic {
                message,
                location: None,
            }) => write!(f, "task panicked: {message}"),
            None => f.write_str("task was cancelled"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            Some(p) => f
                .debug_struct("Panicked")
                .field("message", &p.message)
                .field("location", &p.location)
                .finish(),
            None => f.write_str("Cancelled"),
        }
    }
}

impl std::error::Error for JoinError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pointer_wide_so_small_results_travel_in_registers() {
        assert_eq!(std::mem::size_of::<JoinError>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<u64, JoinError>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn travels_between_threads_and_into_boxed_errors() {
        fn boxable<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
        let err = JoinError::panicked("boom".into(), None);
        boxable(&err);
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err.clone());
        assert_eq!(boxed.to_string(), err.to_string());
        let sent = std::thread::spawn(move || err).join().expect("the thread ran");
        assert_eq!(sent.panic_message(), Some("boom"));
    }

    #[test]
    fn says_what_happened() {
        let at = JoinError::panicked("boom".into(), Some("src/x.rs:1:2".into()));
        assert_eq!(at.to_string(), "task panicked at src/x.rs:1:2: boom");
        assert_eq!(
            (at.panic_message(), at.panic_location()),
            (Some("boom"), Some("src/x.rs:1:2"))
        );
        assert!(at.is_panic() && !at.is_cancelled());
        let bare = JoinError::panicked("boom".into(), None);
        assert_eq!(bare.to_string(), "task panicked: boom");
        assert_eq!(bare.panic_location(), None);
        let gone = JoinError::CANCELLED;
        assert_eq!(gone.to_string(), "task was cancelled");
        assert!(gone.is_cancelled() && !gone.is_panic() && gone.panic_message().is_none());
        // The `Debug` of the enum it was.
        assert_eq!(format!("{gone:?}"), "Cancelled");
        assert_eq!(
            format!("{at:?}"),
            r#"Panicked { message: "boom", location: Some("src/x.rs:1:2") }"#
        );
        assert_eq!(
            at.into_panic(),
            Some(("boom".into(), Some("src/x.rs:1:2".into())))
        );
        assert_eq!(gone.into_panic(), None);
    }
}
