//! Temporary console passwords (`keywarden reactivate USER --password`): 32 characters from
//! the OS's random source, with an upper-case letter, a lower-case letter, a digit and a
//! symbol, which meets any account password policy up to 32 characters. The password must be
//! changed at first sign-in; it lives in a buffer wiped when dropped.

use zeroize::Zeroizing;

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
/// Symbols IAM accepts in passwords, without quotes or `|`, which shells and files mangle.
const SYMBOLS: &[u8] = b"!@#$%^&*()_+-=[]{}";
const LENGTH: usize = 32;

/// A new temporary password; an error only when the OS's random source fails.
pub fn temporary() -> Result<Zeroizing<String>, String> {
    let alphabet: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    loop {
        let mut out = Zeroizing::new(String::with_capacity(LENGTH));
        let mut bytes = Zeroizing::new([0u8; 64]);
        while out.len() < LENGTH {
            getrandom::fill(bytes.as_mut()).map_err(|e| format!("the OS's random source failed: {e}"))?;
            // Rejection sampling: only bytes below the largest multiple of the alphabet's
            // size, so that every character is equally likely.
            let limit = 256 - 256 % alphabet.len();
            for b in bytes.iter().filter(|b| usize::from(**b) < limit) {
                if out.len() < LENGTH {
                    out.push(char::from(alphabet[usize::from(*b) % alphabet.len()]));
                }
            }
        }
        if has_every_class(&out) {
            return Ok(out);
        }
    }
}

fn has_every_class(p: &str) -> bool {
    [UPPER, LOWER, DIGITS, SYMBOLS]
        .iter()
        .all(|class| p.bytes().any(|b| class.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = temporary().unwrap();
        let b = temporary().unwrap();
        assert_eq!(a.len(), LENGTH);
        assert!(has_every_class(&a), "{}", a.len());
        assert_ne!(*a, *b);
        assert!(a.bytes().all(|c| [UPPER, LOWER, DIGITS, SYMBOLS].concat().contains(&c)));
        assert!(!has_every_class("abcdefgh12345678"), "no upper case, no symbol");
    }
}
