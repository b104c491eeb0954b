//! Which requests a full process still takes: the request slots (`http.max_in_flight`) are
//! shared out by what a request does, so that past capacity the work already accepted keeps
//! moving while new work waits.
//!
//! Four classes, shed in this order (as Stripe's load shedder orders its traffic: reads
//! first, then ordinary writes, critical requests last):
//! - **reads** (`GET`, `HEAD`, `OPTIONS`) may take up to `http.read_share_percent` of the
//!   slots — a list or an order view turned away is asked again a moment later and loses
//!   nothing;
//! - **status polls** (`GET /api/v1/orders/{id}/status`) and **writes** (new orders,
//!   catalogue and party changes, logins) up to `http.write_share_percent`. A poll is one
//!   keyed row, the cheapest request there is, and the way every client follows an order
//!   after its `202`: shed with the other reads, it was turned away whenever the slots were
//!   half held — at the lifecycle benchmark's 300 orders/s mostly by vendors' actions
//!   waiting for their group commit — and the client saw its order late although the
//!   pipeline had already moved it;
//! - **progress** — the actions that carry an accepted order or money forward: a vendor's
//!   accept, reject, dispatch and delivery, the retailer's confirm, cancel and report, an
//!   operator's approve and reject, a payment — may take every slot. Without the reserve,
//!   a flood of new orders fills the slots and the vendors' accepts are refused, so fewer
//!   orders finish the more arrive.
//!
//! One atomic counter holds the slots in use; a request is admitted while the count is below
//! its class's limit. `/health`, `/ready`, `/metrics` and Twilio's webhooks bypass it (see
//! `http::shed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::Method;

/// What a request does, for shedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Reads: shed first.
    Read,
    /// The status poll after a `202`: shed with the writes.
    Poll,
    /// New orders and every other change.
    Write,
    /// The actions that carry accepted orders and money forward: shed last.
    Progress,
}

impl Class {
    /// Classifies a request by its method and path.
    pub fn of(method: &Method, path: &str) -> Class {
        let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let other = if read { Class::Read } else { Class::Write };
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return other;
        };
        // Every request passes here: the segments go into a small array, not a new Vec.
        let mut segments = [""; 5];
        let mut n = 0;
        for segment in rest.trim_end_matches('/').split('/') {
            let Some(slot) = segments.get_mut(n) else {
                return other; // deeper than any poll's or action's path
            };
            *slot = segment;
            n += 1;
        }
        match (read, &segments[..n]) {
            (true, ["orders", id, "status"]) if *method == Method::GET && !id.is_empty() => {
                Class::Poll
            }
            (
                false,
                [
                    "fulfilments",
                    _,
                    "accept" | "reject" | "dispatch" | "deliver",
                ]
                | [
                    "orders",
                    _,
                    "approve" | "cancel" | "confirm" | "reject" | "report-issue",
                ]
                | ["credit", "accounts", _, "payments"],
            ) => Class::Progress,
            _ => other,
        }
    }

    /// The label of the shed counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Poll => "poll",
            Class::Write => "write",
            Class::Progress => "progress",
        }
    }
}

/// The request slots of one process.
pub struct Admission {
    in_flight: AtomicUsize,
    read_limit: usize,
    write_limit: usize,
    all: usize,
    /// `khaacho_http_in_flight`, looked up once (`App::new` installs the recorder before
    /// any router exists) rather than on each request.
    gauge: metrics::Gauge,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("in_flight", &self.in_flight)
            .field("read_limit", &self.read_limit)
            .field("write_limit", &self.write_limit)
            .field("all", &self.all)
            .finish_non_exhaustive()
    }
}

/// A taken slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.decrement(1.0);
    }
}

impl Admission {
    /// `max` slots; reads may take `read_percent` of them and writes `write_percent`
    /// (rounded up, so each class has at least one slot when `max` is at least one).
    pub fn new(max: usize, read_percent: u8, write_percent: u8) -> Arc<Self> {
        let share = |p: u8| (max * usize::from(p.min(100))).div_ceil(100);
        Arc::new(Admission {
            in_flight: AtomicUsize::new(0),
            read_limit: share(read_percent),
            write_limit: share(write_percent),
            all: max,
            gauge: metrics::gauge!("khaacho_http_in_flight"),
        })
    }

    fn limit(&self, class: Class) -> usize {
        match class {
            Class::Read => self.read_limit,
            Class::Poll | Class::Write => self.write_limit,
            Class::Progress => self.all,
        }
    }

    /// A slot for a request of `class`, or `None` when the slots its class may use are all
    /// taken.
    pub fn admit(self: &Arc<Self>, class: Class) -> Option<Slot> {
        let limit = self.limit(class);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.gauge.increment(1.0);
        Some(Slot(self.clone()))
    }

    /// Slots in use now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_by_what_they_carry_forward() {
        let progress = [
            "/api/v1/fulfilments/0b4c/accept",
            "/api/v1/fulfilments/0b4c/reject",
            "/api/v1/fulfilments/0b4c/dispatch",
            "/api/v1/fulfilments/0b4c/deliver",
            "/api/v1/orders/0b4c/confirm",
            "/api/v1/orders/0b4c/cancel",
            "/api/v1/orders/0b4c/report-issue",
            "/api/v1/orders/0b4c/approve",
            "/api/v1/orders/0b4c/reject",
            "/api/v1/credit/accounts/0b4c/payments",
        ];
        for path in progress {
            assert_eq!(Class::of(&Method::POST, path), Class::Progress, "{path}");
            assert_eq!(Class::of(&Method::GET, path), Class::Read, "{path}");
        }
        for path in [
            "/api/v1/orders",
            "/api/v1/orders/parse",
            "/api/v1/auth/login",
            "/api/v1/credit/accounts/0b4c/limit",
            "/api/v1/fulfilments/0b4c",
            "/api/v1/fulfilments/0b4c/accept/more",
            "/api/v1/credit/accounts/0b4c/payments/x/y/z",
            "/orders/0b4c/confirm",
        ] {
            assert_eq!(Class::of(&Method::POST, path), Class::Write, "{path}");
        }
        let (get, head) = (Method::GET, Method::HEAD);
        for (method, path, class) in [
            (&Method::PUT, "/api/v1/vendors/0b4c", Class::Write),
            (&head, "/api/v1/orders", Class::Read),
            // The status poll, and only it: not the order, another resource's status, a
            // deeper path, a path outside the API or a HEAD.
            (&get, "/api/v1/orders/0b4c/status", Class::Poll),
            (&get, "/api/v1/orders/0b4c", Class::Read),
            (&get, "/api/v1/orders/status", Class::Read),
            (&get, "/api/v1/orders//status", Class::Read),
            (&get, "/api/v1/orders/0b4c/x/status", Class::Read),
            (&get, "/api/v1/fulfilments/0b4c/status", Class::Read),
            (&get, "/orders/0b4c/status", Class::Read),
            (&head, "/api/v1/orders/0b4c/status", Class::Read),
        ] {
            assert_eq!(Class::of(method, path), class, "{method} {path}");
        }
    }

    #[test]
    fn reads_are_refused_first_then_writes_and_progress_takes_every_slot() {
        let a = Admission::new(8, 50, 75);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(a.admit(Class::Read).expect("reads take half"));
        }
        assert!(a.admit(Class::Read).is_none(), "a fifth read is shed");
        held.push(
            a.admit(Class::Poll)
                .expect("a status poll takes the writes' share"),
        );
        held.push(a.admit(Class::Write).expect("writes take three quarters"));
        assert!(
            a.admit(Class::Write).is_none(),
            "a seventh request that writes is shed"
        );
        assert!(a.admit(Class::Poll).is_none(), "and a seventh status poll");
        held.push(a.admit(Class::Progress).expect("progress takes the rest"));
        held.push(a.admit(Class::Progress).expect("progress takes the rest"));
        assert!(a.admit(Class::Progress).is_none(), "every slot is taken");
        assert_eq!(a.in_flight(), 8);
        held.truncate(3);
        assert_eq!(a.in_flight(), 3, "dropped slots are freed");
        assert!(a.admit(Class::Read).is_some());
    }

    #[test]
    fn every_class_keeps_a_slot_when_the_process_has_one() {
        let a = Admission::new(1, 50, 75);
        let slot = a.admit(Class::Read).expect("one slot: a read may take it");
        assert!(a.admit(Class::Progress).is_none());
        drop(slot);
        assert!(a.admit(Class::Write).is_some());
        let none = Admission::new(0, 50, 75);
        assert!(none.admit(Class::Progress).is_none());
    }

    #[test]
    fn concurrent_admissions_never_pass_the_limit() {
        let a = Admission::new(16, 50, 75);
        let admitted = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (a, admitted, peak) = (&a, &admitted, &peak);
                s.spawn(move || {
                    let class = [Class::Read, Class::Poll, Class::Write, Class::Progress][t % 4];
                    for _ in 0..2_000 {
                        if let Some(slot) = a.admit(class) {
                            peak.fetch_max(a.in_flight(), Ordering::AcqRel);
                            admitted.fetch_add(1, Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Acquire) <= 16);
        assert!(admitted.load(Ordering::Relaxed) > 0);
        assert_eq!(a.in_flight(), 0, "every slot given back");
    }
}
