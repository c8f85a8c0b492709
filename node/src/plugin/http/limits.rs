//! The bounds HTTP requests to plugins run under.
//!
//! Filled by the node from its `[ingress]` table (not from `[plugin]`); the defaults are what a
//! host gets without one.

use std::time::Duration;

/// Bounds of the HTTP requests served by plugins, and of the instances serving them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest one request may take, from its arrival to the end of its response body.
    pub deadline: Duration,
    /// Largest request body, bytes: a larger `Content-Length` is refused with 413 before the
    /// plugin runs, a chunked body is cut there (413 if the plugin had not answered yet).
    pub max_request_body: u64,
    /// Largest response body, bytes: past it the body ends with an error (the connection is
    /// cut) and the instance is dropped.
    pub max_response_body: u64,
    /// Requests in flight per leased core: a deployment serves at most
    /// `max(2, cpu_millis × requests_per_core / 1000)` at once (capped at `max_instances`);
    /// more are answered 503.
    pub requests_per_core: u32,
    /// HTTP instances alive at once on the host, all deployments together (sizes the pool).
    pub max_instances: u32,
    /// Requests one instance serves before it is recycled; 1 = a fresh instance per request.
    pub reuse: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            max_request_body: 10 << 20,
            max_response_body: 64 << 20,
            requests_per_core: 32,
            max_instances: 256,
            reuse: 10_000,
        }
    }
}

impl HttpLimits {
    /// Requests in flight at once for a deployment leasing `cpu_millis`.
    pub fn concurrency(&self, cpu_millis: u64) -> usize {
        let n = cpu_millis.saturating_mul(u64::from(self.requests_per_core)) / 1000;
        let n = usize::try_from(n).unwrap_or(usize::MAX).max(2);
        n.min(
            usize::try_from(self.max_instances)
                .unwrap_or(usize::MAX)
                .max(1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_follows_the_lease_within_bounds() {
        let l = HttpLimits::default();
        assert_eq!(l.concurrency(0), 2);
        assert_eq!(l.concurrency(10), 2);
        assert_eq!(l.concurrency(1000), 32);
        assert_eq!(l.concurrency(2500), 80);
        assert_eq!(l.concurrency(1_000_000), 256);
    }
}
