//! A token bucket for IAM requests (`aws.max_requests_per_second`).
//!
//! IAM's request rate is per account and shared with everything else that calls IAM there;
//! the SDK's adaptive retry only reacts after throttling. The bucket keeps a full audit under
//! a fixed rate from the start. It uses tokio's clock, so tests run on paused time.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `per_second` > 0; `burst` >= 1 tokens may be spent at once after idling.
    pub fn new(per_second: f64, burst: f64) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until one request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.per_second;
                s.0 = (s.0 + refill).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_across_concurrent_callers() {
        let bucket = Arc::new(TokenBucket::new(10.0, 1.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let b = Arc::clone(&bucket);
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    b.acquire().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 40 requests at 10/s with one token to start: 3.9 s of (virtual) time.
        let took = start.elapsed().as_secs_f64();
        assert!((3.85..=4.0).contains(&took), "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spent_at_once_after_idling() {
        let bucket = TokenBucket::new(2.0, 5.0);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        bucket.acquire().await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.49..=0.51).contains(&took), "took {took}");
    }
}
