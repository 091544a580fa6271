//! [`Given`]: the text each setting was read from, for error messages.

/// Variables' texts as given (see [`Config::from_lookup`](super::Config::from_lookup)). Not part of
/// what a configuration *is*: two configurations with the same settings
/// are equal however they were made.
#[derive(Debug, Clone, Default)]
pub(super) struct Given(Vec<(&'static str, String)>);

impl PartialEq for Given {
    fn eq(&self, _: &Given) -> bool {
        true
    }
}

impl Eq for Given {}

impl Given {
    pub(super) fn forget(&mut self, var: &str) {
        self.0.retain(|(v, _)| *v != var);
    }

    pub(super) fn text(&self, var: &str) -> Option<&str> {
        self.0.iter().find(|(v, _)| *v == var).map(|(_, t)| t.as_str())
    }
}

impl From<Vec<(&'static str, String)>> for Given {
    fn from(texts: Vec<(&'static str, String)>) -> Self {
        Given(texts)
    }
}
