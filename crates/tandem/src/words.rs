//! Counted nouns in messages an operator reads: "1 VIP", "2 VIPs".

/// `n` and the noun, plural unless `n` is 1 (`noun` takes an "s").
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(super::count(0, "rule"), "0 rules");
        assert_eq!(super::count(1, "VIP"), "1 VIP");
        assert_eq!(super::count(2, "interface"), "2 interfaces");
    }
}
