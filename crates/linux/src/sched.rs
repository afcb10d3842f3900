//! Scheduling of the daemon's own threads.

use std::io;

/// Raises the calling thread's priority (its nice value, which Linux keeps per thread) to
/// `nice` (-20..=19; lower runs first), so that the thread that sends CARP adverts is picked
/// before busy threads of the same and other processes when the CPUs are loaded.
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let tid = libc::id_t::try_from(tid).map_err(|_| io::Error::other("gettid out of range"))?;
    // SAFETY: setpriority takes plain integers; PRIO_PROCESS with a thread id applies to that
    // one thread on Linux.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the process's soft limit on open files to its hard limit (systemd's default soft
/// limit is 1024): the daemon's own bounds (config sync's connection caps) then keep a flood
/// far from the limit. Returns the limit before and after.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok((soft, hard.max(soft)))
}
