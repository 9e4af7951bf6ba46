//! Faults a test can inject into a double: the next requests fail the way Azure services fail
//! under load or during an incident, so the provider's retries and deadlines can be tested.
//!
//! Faults queue up and each one is spent on exactly one request, in order; a double with an
//! empty queue behaves normally. That keeps fault tests bounded: they stop by themselves.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and the service's usual error body (e.g. 500, 503).
    Status(u16),
    /// Answer 429 Too Many Requests, with `Retry-After: <seconds>` when given.
    Throttle {
        /// The `Retry-After` header value in seconds, or none at all.
        retry_after: Option<u64>,
    },
    /// Drop the connection without answering.
    Reset,
}

/// A queue of faults, each spent on one request.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue(Mutex<VecDeque<Fault>>);

impl FaultQueue {
    /// Queues `fault` for `count` consecutive requests.
    pub fn push(&self, fault: Fault, count: usize) {
        let mut queue = self.0.lock().expect("fault queue lock");
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// The fault for the current request, if one is queued.
    pub fn take(&self) -> Option<Fault> {
        self.0.lock().expect("fault queue lock").pop_front()
    }
}
