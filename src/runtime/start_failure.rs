//! Why a shard failed to start, and what to change: for the failures its
//! checks before start-up cannot foresee (limits shared with other
//! processes, or used up by the host meanwhile), glommio's error or panic
//! gets a hint naming the limit or setting.

use super::RuntimeError;

/// A shard's start failure, with what to change for what it met.
pub(super) fn start_error(
    shard: usize,
    cpu: Option<usize>,
    reason: String,
    io_memory: usize,
) -> RuntimeError {
    let reason = match start_hint(&reason, io_memory) {
        Some(hint) => format!("{reason} ({hint})"),
        None => reason,
    };
    RuntimeError::ShardStart { shard, cpu, reason }
}

/// What to change, for what `reason` says.
fn start_hint(reason: &str, io_memory: usize) -> Option<String> {
    let lower = reason.to_lowercase();
    if lower.contains("too many open files") {
        let open = crate::config::nofile::open_now().map(|n| format!("{n} descriptors open now: "));
        return Some(format!(
            "{}raise the descriptor limit (`ulimit -n`, RLIMIT_NOFILE)",
            open.unwrap_or_default()
        ));
    }
    if lower.contains("failed to spawn thread") || lower.contains("resource temporarily unavailable") {
        return Some(format!(
            "no thread could be started: raise the limit on processes and threads (`ulimit -u`, \
             RLIMIT_NPROC, a container's pids limit), or lower {} / {}",
            crate::config::ENV_SHARDS,
            crate::config::ENV_BLOCKING_THREADS
        ));
    }
    if lower.contains("poisoned") {
        return Some(
            "glommio's io_uring setup failed at an earlier start in this process and cannot be \
             tried again in it: restart the process, after fixing what the first error said"
                .to_string(),
        );
    }
    (lower.contains("glommio panicked") || lower.contains("memory")).then(|| {
        format!(
            "with {} = {io_memory} bytes of io_uring memory per shard: lower it, or raise \
             RLIMIT_MEMLOCK, which the kernel counts for all of this user's processes together",
            crate::config::ENV_IO_MEMORY
        )
    })
}

#[cfg(test)]
mod tests {
    use super::start_hint;

    /// Each way a shard fails to start that its checks cannot foresee gets
    /// the hint for it (before: every glommio panic got the memlock hint,
    /// an EMFILE or a thread limit none).
    #[test]
    fn a_start_failure_names_what_to_change() {
        let hint = |reason: &str| start_hint(reason, 1 << 20).unwrap_or_default();
        let emfile = hint("glommio panicked: called `Result::unwrap()` on an `Err` value: Too many open files (os error 24)");
        assert!(
            emfile.contains("ulimit -n") && emfile.contains("descriptors open now: raise"),
            "{emfile}"
        );
        assert!(!emfile.contains("MEMLOCK"), "{emfile}");
        let threads = hint("glommio panicked: failed to spawn thread: Os { code: 11, kind: WouldBlock }");
        assert!(
            threads.contains("ulimit -u") && threads.contains("SHARDLET_SHARDS"),
            "{threads}"
        );
        let poisoned = hint("glommio panicked: Once instance has previously been poisoned");
        assert!(poisoned.contains("restart the process"), "{poisoned}");
        let memlock = hint("glommio panicked: Failed to register a probe. The most likely reason is that your kernel witnessed Romulus killing Remus (too old!!)");
        assert!(
            memlock.contains("SHARDLET_IO_MEMORY = 1048576") && memlock.contains("RLIMIT_MEMLOCK"),
            "{memlock}"
        );
        assert!(memlock.contains("all of this user's processes"), "{memlock}");
        assert_eq!(start_hint("Invalid CPU 7", 1 << 20), None);
    }
}
