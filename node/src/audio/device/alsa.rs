//! ALSA's own complaints (missing cards, unreachable plugins) sent to `tracing` at debug level
//! instead of standard error.

/// Sends ALSA's own error lines (missing cards, unreachable plugins) to `tracing` instead of
/// standard error, for the thread it is installed on.
#[derive(Debug)]
pub(super) struct AlsaQuiet {
    #[cfg(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    output: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaQuiet {
    pub(super) fn install() -> Self {
        Self {
            #[cfg(any(
                target_os = "linux",
                target_os = "dragonfly",
                target_os = "freebsd",
                target_os = "netbsd"
            ))]
            output: alsa::Output::local_error_handler().ok(),
        }
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
impl Drop for AlsaQuiet {
    fn drop(&mut self) {
        if let Some(output) = &self.output {
            let text = output.borrow().to_string();
            if !text.trim().is_empty() {
                tracing::debug!(alsa = %text.trim_end(), "ALSA said");
            }
        }
    }
}
