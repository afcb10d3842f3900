//! The daemon's randomness, all of it: the OS random number generator (getrandom(2), through
//! the `getrandom` crate), or no start at all.
//!
//! What it feeds must never repeat across starts: the state sync epoch is part of every
//! XChaCha20-Poly1305 nonce (a repeated epoch repeats nonces under the cluster's key), the
//! state sync engine's seed picks its challenges, and the CARP engine's seed its advert
//! counters. A value made up when the generator cannot be read (0, a pid) would repeat, so a
//! failure is an error that stops the daemon, never a fallback.

/// A random u64 from the OS for `what` (named in the error).
pub fn u64(what: &str) -> anyhow::Result<u64> {
    u64_from(getrandom::fill, what)
}

/// [`u64`] with the generator passed in (tests inject a failing one).
fn u64_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
    what: &str,
) -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    fill(&mut b).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the OS random number generator (getrandom) for {what}: {e}; \
             refusing to start without it (values it would have made up repeat across starts)"
        )
    })?;
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn values_are_distinct() {
        let got: BTreeSet<u64> = (0..64)
            .map(|_| u64("a test").expect("the OS generator"))
            .collect();
        assert_eq!(got.len(), 64, "{got:?}");
    }

    /// A generator that cannot be read is an error naming what needed it, never a value made
    /// up (the previous code returned 0: every start had the same epoch).
    #[test]
    fn a_failing_generator_is_an_error() {
        let failing = |_: &mut [u8]| Err(getrandom::Error::UNSUPPORTED);
        let e = u64_from(failing, "the state sync epoch").expect_err("no value without the OS");
        let msg = format!("{e:#}");
        assert!(msg.contains("the state sync epoch"), "{msg}");
        assert!(msg.contains("random"), "{msg}");
        assert!(
            msg.contains(&getrandom::Error::UNSUPPORTED.to_string()),
            "{msg}"
        );
        // A generator that fills part of the buffer and then fails is a failure too.
        let partial = |b: &mut [u8]| {
            b[0] = 1;
            Err(getrandom::Error::UNEXPECTED)
        };
        assert!(u64_from(partial, "x").is_err());
    }
}
