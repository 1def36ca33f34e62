//! A value every reader sees whole, that a writer replaces while the service runs: the key ring
//! the STS signs with, the verifier the Face front checks with, the certificate handshakes get.

use std::sync::{Arc, RwLock};

/// The value in force, shared; cheap to clone. A reader gets an `Arc` of the value as it was
/// when it asked, and keeps it as long as it likes: a replacement is seen by the next reader,
/// never half-made. A lock poisoned by a panicking writer still holds a whole value (the
/// writer only ever swaps an `Arc`), so it is used as it is.
#[derive(Debug)]
pub struct Swappable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Swappable<T> {
    fn clone(&self) -> Self {
        Swappable(self.0.clone())
    }
}

impl<T> Swappable<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Swappable(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value in force now.
    pub fn current(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `value` in force for every reader from now on.
    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut slot) => *slot = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Swappable;

    #[test]
    fn a_reader_keeps_what_it_read_and_the_next_sees_the_replacement() {
        let shared = Swappable::new(String::from("first"));
        let other = shared.clone();
        let held = shared.current();
        other.replace(String::from("second"));
        assert_eq!(*held, "first");
        assert_eq!(*shared.current(), "second");
    }

    #[test]
    fn a_writer_that_panicked_leaves_a_whole_value() {
        let shared = Swappable::new(1u32);
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.0.write().unwrap();
            panic!("a writer fails while holding the lock");
        })
        .join();
        assert_eq!(*shared.current(), 1);
        shared.replace(2);
        assert_eq!(*shared.current(), 2);
    }
}
