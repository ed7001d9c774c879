//! The withdrawal state machine, pure: which event may move a withdrawal
//! from which state, and what it does to the ledger hold placed when the
//! withdrawal was requested. Storage and the worker apply these transitions
//! under a row lock, so each one happens once.
//!
//! ```text
//! requested ──confirm(e-mail)──▶ confirmed ──auto / 2 admins──▶ approved
//!     │                             │                              │ sign (bytes + txid stored)
//!     ├── cancel / reject ──────────┴── cancel / reject ───────────┤
//!     ▼                                                            ▼
//! cancelled, rejected (hold voided)                             signed ──broadcast──▶ broadcast
//!                                                                  │                     │ confirmations ≥ n
//!                                                                  └─ fail ─▶ failed ◀───┤ (receipt status 0)
//!                                                                     (hold voided)      ▼
//!                                                                                     completed (hold posted)
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Requested,
    Confirmed,
    Approved,
    Signed,
    Broadcast,
    Completed,
    Failed,
    Rejected,
    Cancelled,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Requested,
        State::Confirmed,
        State::Approved,
        State::Signed,
        State::Broadcast,
        State::Completed,
        State::Failed,
        State::Rejected,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Confirmed => "confirmed",
            State::Approved => "approved",
            State::Signed => "signed",
            State::Broadcast => "broadcast",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// No event moves a withdrawal out of a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Completed | State::Failed | State::Rejected | State::Cancelled
        )
    }

    /// Signed bytes may exist from here on: the withdrawal can no longer be
    /// cancelled or rejected, only completed or failed on chain.
    pub fn is_on_chain(self) -> bool {
        matches!(self, State::Signed | State::Broadcast)
    }
}

/// What happens to a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The customer clicked the e-mailed link.
    ConfirmByEmail,
    /// An admin approves (above the threshold two different admins must).
    Approve {
        admin: Uuid,
    },
    Reject {
        admin: Uuid,
        reason: String,
    },
    /// The customer changed their mind.
    Cancel,
    /// The worker signed and stored the bytes and txid (before broadcasting).
    Sign {
        txid: String,
    },
    Broadcast,
    /// The network's confirmations were reached.
    Confirmed {
        confirmations: u32,
    },
    /// On-chain failure (e.g. an EVM receipt with status 0) or a refused broadcast.
    Fail {
        reason: String,
    },
}

/// What a transition does to the hold placed at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEffect {
    Keep,
    /// Post the hold: the coins left.
    Post,
    /// Void the hold: the customer's balance is available again.
    Void,
}

/// The facts a transition depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub state: State,
    /// Admins who approved so far (distinct).
    pub approvals: Vec<Uuid>,
    /// Whether the amount is above the auto-approval threshold.
    pub needs_two_approvals: bool,
    /// The network's required confirmations.
    pub required_confirmations: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: State,
    pub hold: HoldEffect,
    /// The admin approvals after the event.
    pub approvals: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a {state} withdrawal cannot take {event}")]
    NotAllowed {
        state: &'static str,
        event: &'static str,
    },
    #[error("this admin already approved; a second, different admin must")]
    SameApprover,
    #[error("{have} of {need} confirmations")]
    TooFewConfirmations { have: u32, need: u32 },
}

impl TransitionError {
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::NotAllowed { .. } => "invalid_state",
            TransitionError::SameApprover => "same_approver",
            TransitionError::TooFewConfirmations { .. } => "too_few_confirmations",
        }
    }
}

/// The event's name in errors (and, but for `confirmed`, in the timeline).
pub fn event_name(e: &Event) -> &'static str {
    match e {
        Event::ConfirmByEmail => "confirm",
        Event::Approve { .. } => "approve",
        Event::Reject { .. } => "reject",
        Event::Cancel => "cancel",
        Event::Sign { .. } => "sign",
        Event::Broadcast => "broadcast",
        Event::Confirmed { .. } => "confirmed",
        Event::Fail { .. } => "fail",
    }
}

/// The state after `event`, or why it is not allowed. Confirmation by e-mail
/// approves at once below the threshold; above it, approval needs two
/// different admins.
pub fn apply(w: &Withdrawal, event: &Event) -> Result<Transition, TransitionError> {
    let not_allowed = || TransitionError::NotAllowed {
        state: w.state.as_str(),
        event: event_name(event),
    };
    let to = |to: State, hold: HoldEffect| Transition {
        to,
        hold,
        approvals: w.approvals.clone(),
    };
    match (w.state, event) {
        (State::Requested, Event::ConfirmByEmail) => Ok(if w.needs_two_approvals {
            to(State::Confirmed, HoldEffect::Keep)
        } else {
            to(State::Approved, HoldEffect::Keep)
        }),
        (State::Confirmed, Event::Approve { admin }) if w.needs_two_approvals => {
            if w.approvals.contains(admin) {
                return Err(TransitionError::SameApprover);
            }
            let mut approvals = w.approvals.clone();
            approvals.push(*admin);
            let next = if approvals.len() >= 2 {
                State::Approved
            } else {
                State::Confirmed
            };
            Ok(Transition {
                to: next,
                hold: HoldEffect::Keep,
                approvals,
            })
        }
        (State::Requested | State::Confirmed | State::Approved, Event::Reject { .. }) => {
            Ok(to(State::Rejected, HoldEffect::Void))
        }
        (State::Requested | State::Confirmed | State::Approved, Event::Cancel) => {
            Ok(to(State::Cancelled, HoldEffect::Void))
        }
        (State::Approved, Event::Sign { .. }) => Ok(to(State::Signed, HoldEffect::Keep)),
        (State::Signed, Event::Broadcast) => Ok(to(State::Broadcast, HoldEffect::Keep)),
        (State::Signed | State::Broadcast, Event::Confirmed { confirmations }) => {
            if *confirmations < w.required_confirmations {
                return Err(TransitionError::TooFewConfirmations {
                    have: *confirmations,
                    need: w.required_confirmations,
                });
            }
            Ok(to(State::Completed, HoldEffect::Post))
        }
        // Approved: the worker could not build the transaction at all.
        (State::Approved | State::Signed | State::Broadcast, Event::Fail { .. }) => {
            Ok(to(State::Failed, HoldEffect::Void))
        }
        _ => Err(not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    fn w(state: State, two: bool) -> Withdrawal {
        Withdrawal {
            state,
            approvals: Vec::new(),
            needs_two_approvals: two,
            required_confirmations: 3,
        }
    }

    fn step(w: &mut Withdrawal, e: Event) -> HoldEffect {
        let t = apply(w, &e).unwrap();
        w.state = t.to;
        w.approvals = t.approvals;
        t.hold
    }

    #[test]
    fn small_withdrawal_is_approved_by_its_confirmation_and_completes() {
        let mut x = w(State::Requested, false);
        assert_eq!(step(&mut x, Event::ConfirmByEmail), HoldEffect::Keep);
        assert_eq!(x.state, State::Approved);
        step(&mut x, Event::Sign { txid: "ab".into() });
        step(&mut x, Event::Broadcast);
        assert!(matches!(
            apply(&x, &Event::Confirmed { confirmations: 2 }),
            Err(TransitionError::TooFewConfirmations { have: 2, need: 3 })
        ));
        assert_eq!(
            step(&mut x, Event::Confirmed { confirmations: 3 }),
            HoldEffect::Post
        );
        assert_eq!(x.state, State::Completed);
    }

    #[test]
    fn a_large_withdrawal_needs_two_different_admins() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut x = w(State::Requested, true);
        step(&mut x, Event::ConfirmByEmail);
        assert_eq!(x.state, State::Confirmed);
        step(&mut x, Event::Approve { admin: a });
        assert_eq!(x.state, State::Confirmed);
        assert_eq!(
            apply(&x, &Event::Approve { admin: a }),
            Err(TransitionError::SameApprover)
        );
        step(&mut x, Event::Approve { admin: b });
        assert_eq!(x.state, State::Approved);
        assert_eq!(x.approvals, vec![a, b]);
        // Below the threshold no admin approval is taken at all.
        let y = w(State::Approved, false);
        assert!(apply(&y, &Event::Approve { admin: a }).is_err());
    }

    #[test]
    fn signed_bytes_cannot_be_cancelled_and_a_failure_voids_the_hold() {
        let mut x = w(State::Approved, false);
        step(&mut x, Event::Sign { txid: "ab".into() });
        assert!(apply(&x, &Event::Cancel).is_err());
        assert!(
            apply(
                &x,
                &Event::Reject {
                    admin: Uuid::nil(),
                    reason: "late".into()
                }
            )
            .is_err()
        );
        assert!(
            apply(&x, &Event::Sign { txid: "cd".into() }).is_err(),
            "never signed anew"
        );
        step(&mut x, Event::Broadcast);
        assert_eq!(
            step(
                &mut x,
                Event::Fail {
                    reason: "receipt status 0".into()
                }
            ),
            HoldEffect::Void
        );
        assert_eq!(x.state, State::Failed);
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::ConfirmByEmail),
            (0u8..3).prop_map(|n| Event::Approve {
                admin: Uuid::from_u128(u128::from(n) + 1)
            }),
            Just(Event::Reject {
                admin: Uuid::from_u128(9),
                reason: "r".into()
            }),
            Just(Event::Cancel),
            Just(Event::Sign { txid: "t".into() }),
            Just(Event::Broadcast),
            (0u32..6).prop_map(|c| Event::Confirmed { confirmations: c }),
            Just(Event::Fail { reason: "f".into() }),
        ]
    }

    proptest! {
        /// Whatever happens, in any order: the hold ends exactly once (posted
        /// on completion, voided on failure, rejection or cancellation and
        /// never both), final states stay final, signing happens at most once,
        /// and approval above the threshold always has two distinct admins.
        #[test]
        fn the_hold_ends_exactly_once(two in any::<bool>(), events in proptest::collection::vec(any_event(), 0..30)) {
            let mut x = w(State::Requested, two);
            let mut ends = 0;
            let mut signs = 0;
            for e in events {
                let before = x.state;
                if let Ok(t) = apply(&x, &e) {
                        prop_assert!(!before.is_final());
                        if t.hold != HoldEffect::Keep {
                            ends += 1;
                            prop_assert!(t.to.is_final());
                            prop_assert_eq!(t.hold == HoldEffect::Post, t.to == State::Completed);
                        }
                        if matches!(e, Event::Sign { .. }) {
                            signs += 1;
                        }
                        if t.to == State::Approved && two {
                            prop_assert!(t.approvals.len() >= 2);
                            let mut distinct = t.approvals.clone();
                            distinct.sort();
                            distinct.dedup();
                            prop_assert_eq!(distinct.len(), t.approvals.len());
                        }
                        x.state = t.to;
                        x.approvals = t.approvals;
                }
            }
            prop_assert!(ends <= 1);
            prop_assert_eq!(ends == 1, x.state.is_final());
            prop_assert!(signs <= 1);
        }
    }
}
