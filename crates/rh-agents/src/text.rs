//! Building the short texts of records cheaply: they are made on every call and retry, so each
//! is built in a reused per-thread buffer and copied once into its shared string.

use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Builds a text with `fill` and returns it as a shared string, with one allocation.
pub(crate) fn build(fill: impl FnOnce(&mut String)) -> Arc<str> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut text) => {
            text.clear();
            fill(&mut text);
            Arc::from(text.as_str())
        }
        // Re-entered (user code run by `fill` built a text of its own): a fresh buffer.
        Err(_) => {
            let mut text = String::new();
            fill(&mut text);
            Arc::from(text)
        }
    })
}

/// Appends `n` in decimal (cheaper than the formatting machinery on the hot path).
pub(crate) fn push_decimal(text: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        text.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1234, u32::MAX] {
            let mut text = String::new();
            push_decimal(&mut text, n);
            assert_eq!(text, n.to_string());
        }
    }

    #[test]
    fn nested_builds_do_not_collide() {
        let outer = build(|t| {
            t.push_str("outer ");
            let inner = build(|t| t.push_str("inner"));
            t.push_str(&inner);
        });
        assert_eq!(&*outer, "outer inner");
    }
}
