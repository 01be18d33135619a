//! A sorted set of short names (a profile's actions and regions) kept in one string, each name
//! followed by a newline: it costs its bytes and one allocation, not a tree of strings, which
//! is most of what keeps a profile small. Names never hold a newline (the event checks allow
//! letters, digits, `-`, `.` and `:` only).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The set; the order is the names' (byte-wise) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet {
    joined: String,
    len: usize,
}

impl NameSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.joined.split_terminator('\n')
    }

    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// Inserts `name` unless it is there or the set already holds `bound` names; whether the
    /// name is in the set afterwards.
    pub fn insert(&mut self, name: &str, bound: usize) -> bool {
        let mut at = self.joined.len();
        let mut offset = 0;
        for n in self.iter() {
            match n.cmp(name) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Greater => {
                    at = offset;
                    break;
                }
                std::cmp::Ordering::Less => offset += n.len() + 1,
            }
        }
        if self.len >= bound || name.is_empty() || name.contains('\n') {
            return false;
        }
        // Exactly what is needed: a new name is rare, and doubling would leave slack in every
        // profile.
        self.joined.reserve_exact(name.len() + 1);
        self.joined.insert(at, '\n');
        self.joined.insert_str(at, name);
        self.len += 1;
        true
    }
}

impl<S: AsRef<str>> FromIterator<S> for NameSet {
    /// The set of `names` (no bound).
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NameSet {
        let mut set = NameSet::default();
        for n in names {
            set.insert(n.as_ref(), usize::MAX);
        }
        set
    }
}

/// One shared copy of each user agent and source address: a fleet's keys are called by a few
/// SDK versions from a few NAT addresses, so a profile holds a pointer to each, not a copy.
/// Values no profile holds any more are swept out whenever the table has doubled since the
/// last sweep: it stays within about twice the values in use, whatever the traffic.
pub fn intern(value: &str) -> Arc<str> {
    static TABLE: Mutex<Option<Interned>> = Mutex::new(None);
    let Ok(mut guard) = TABLE.lock() else {
        return Arc::from(value);
    };
    let t = guard.get_or_insert_with(|| Interned {
        values: HashSet::new(),
        swept_at: 0,
    });
    if let Some(v) = t.values.get(value) {
        return Arc::clone(v);
    }
    if t.values.len() >= (2 * t.swept_at).max(64) {
        t.values.retain(|v| Arc::strong_count(v) > 1);
        t.swept_at = t.values.len();
    }
    let v: Arc<str> = Arc::from(value);
    t.values.insert(Arc::clone(&v));
    v
}

struct Interned {
    values: HashSet<Arc<str>>,
    /// The table's size after the last sweep.
    swept_at: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interned_value_is_one_copy_and_dropped_once_unused() {
        let a = intern("aws-cli/2.17.46 test-only-value");
        let b = intern("aws-cli/2.17.46 test-only-value");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "aws-cli/2.17.46 test-only-value");
    }

    #[test]
    fn names_stay_sorted_once_each_within_the_bound() {
        let mut s = NameSet::default();
        for n in ["s3:PutObject", "ec2:DescribeVpcs", "s3:GetObject", "s3:PutObject"] {
            assert!(s.insert(n, 3));
        }
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            ["ec2:DescribeVpcs", "s3:GetObject", "s3:PutObject"]
        );
        assert_eq!(s.len(), 3);
        assert!(!s.insert("a:First", 3), "full");
        assert!(s.insert("s3:GetObject", 3), "already there");
        assert!(s.contains("ec2:DescribeVpcs") && !s.contains("ec2"));
        assert!(!s.insert("bad\nname", 10) && !s.insert("", 10));
        assert_eq!(
            ["b", "a", "b"]
                .into_iter()
                .collect::<NameSet>()
                .iter()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
