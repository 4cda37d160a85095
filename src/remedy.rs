//! Errors whose fix a front end names in its own terms: the library says what went wrong and
//! which kind of change would fix it; the CLI names the flag, an app its own setting.

/// A kind of change that fixes an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// A smaller image (the CLI's `--size`).
    SmallerImage,
    /// Another graphics API (the CLI's `--backend`).
    OtherBackend,
    /// An explicit weights file (the CLI's `--weights`).
    WeightsFile,
}

/// An error with the [`Remedy`] its front end should suggest.
#[derive(Debug)]
pub struct NeedsRemedy {
    /// What went wrong.
    pub message: String,
    /// What would fix it.
    pub remedy: Remedy,
}

impl NeedsRemedy {
    /// The error `message`, fixed by `remedy`.
    pub fn error(message: impl Into<String>, remedy: Remedy) -> anyhow::Error {
        Self { message: message.into(), remedy }.into()
    }
}

impl std::fmt::Display for NeedsRemedy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NeedsRemedy {}
