//! Helpers for namespace tests: run code with the calling thread inside a lab namespace.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, and a socket stays in the namespace it
//! was created in, so each namespace's side of a test runs on a thread of its own.
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::thread::JoinHandle;

use lab::{Host, Lab};
use nix::sched::{setns, CloneFlags};
use tokio::runtime::Builder;

/// Moves the calling thread into network namespace `ns` (made by `ip netns add`).
pub fn enter(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}"))
        .or_else(|_| File::open(format!("/var/run/netns/{ns}")))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    setns(&f, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Runs `f` on a new thread inside `ns` with a current-thread tokio runtime.
pub fn spawn_in_ns<T, Fut, F>(ns: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    spawn_in_ns_with(ns, Builder::new_current_thread, f)
}

/// As [`spawn_in_ns`] but on a multi-thread runtime (the task driving `f` runs on the calling
/// thread, inside `ns`; spawned tasks run on workers, which are not in `ns`).
pub fn spawn_in_ns_multi<T, Fut, F>(ns: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    spawn_in_ns_with(
        ns,
        || {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(2);
            b
        },
        f,
    )
}

/// Runs `f` on a new thread inside `ns` with the runtime `runtime()` builds (on that thread,
/// after entering `ns`).
fn spawn_in_ns_with<T, Fut, F>(ns: &str, runtime: fn() -> Builder, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        runtime()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
}

/// Joins a test thread, re-raising its panic in the test.
pub fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs `f` inside `ns` and waits for it.
pub fn block_in_ns<T, Fut, F>(ns: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    join(spawn_in_ns(ns, f))
}

/// `ip -n NS args...`, panicking with stderr on failure.
pub fn ip(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab for `test` with hosts "a" and "b" joined by a veth pair, `eth0` on both sides, with
/// addresses `a_addrs` on a's side and `b_addrs` on b's.
pub fn two_hosts(test: &str, a_addrs: &[&str], b_addrs: &[&str]) -> (Lab, Host, Host) {
    let mut lab = Lab::new(test).expect("lab");
    let a = lab.host("a").expect("host a");
    let b = lab.host("b").expect("host b");
    lab.link(&a, "eth0", a_addrs, &b, "eth0", b_addrs)
        .expect("veth a-b");
    (lab, a, b)
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    v.try_into().expect("6 bytes")
}

/// Waits (up to 10 s) until `ifname` in `ns` has an IPv6 link-local address (the kernel adds it
/// only once the link has carrier); returns whether it is still tentative (DAD running).
pub fn wait_link_local(ns: &str, ifname: &str) -> bool {
    let mut tentative = false;
    let found = lab::wait_until(std::time::Duration::from_secs(10), || {
        let out = ip(
            ns,
            &["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"],
        );
        tentative = out.contains("tentative");
        out.contains("fe80::")
    });
    assert!(found, "no link-local address on {ifname} in {ns}");
    tentative
}
