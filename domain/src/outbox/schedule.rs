//! Recurring jobs. Each occurrence of a schedule maps to one unique key, so
//! however many worker processes tick at once, it is enqueued once.

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};
use diesel_async::AsyncPgConnection;

use super::jobs::{self, JobError, NewJob};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Every N seconds, aligned to the Unix epoch.
    Seconds(u32),
    /// Every day at this UTC time.
    DailyAt(NaiveTime),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: String,
    pub every: Every,
}

impl Schedule {
    pub fn new(kind: impl Into<String>, every: Every) -> Self {
        Schedule {
            kind: kind.into(),
            every,
        }
    }

    /// The occurrence due at `now` (the latest one not after it) and its key.
    pub fn occurrence(&self, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        match self.every {
            Every::Seconds(n) => {
                let n = i64::from(n.max(1));
                let slot = now.timestamp().div_euclid(n);
                let at = Utc.timestamp_opt(slot * n, 0).single().unwrap_or(now);
                (
                    format!("schedule:{}:{}", self.kind, at.format("%Y-%m-%dT%H:%M:%SZ")),
                    at,
                )
            }
            Every::DailyAt(time) => {
                let today = now.date_naive().and_time(time).and_utc();
                let at = if today <= now {
                    today
                } else {
                    today - ChronoDuration::days(1)
                };
                (
                    format!("schedule:{}:{}", self.kind, at.format("%Y-%m-%dT%H:%M:%SZ")),
                    at,
                )
            }
        }
    }

    /// Enqueues the current occurrence unless it is enqueued already.
    pub async fn tick(
        &self,
        conn: &mut AsyncPgConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, JobError> {
        let (key, at) = self.occurrence(now);
        let payload = serde_json::json!({ "scheduled_for": at });
        jobs::enqueue(conn, &NewJob::new(&self.kind, payload).unique(key).at(at)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_n_seconds_has_one_key_per_slot() {
        let s = Schedule::new("prices", Every::Seconds(60));
        let (k1, a1) = s.occurrence(t("2026-11-25T10:00:05Z"));
        let (k2, a2) = s.occurrence(t("2026-11-25T10:00:59Z"));
        let (k3, _) = s.occurrence(t("2026-11-25T10:01:00Z"));
        assert_eq!(k1, k2);
        assert_eq!(a1, a2);
        assert_eq!(a1, t("2026-11-25T10:00:00Z"));
        assert_ne!(k1, k3);
    }

    #[test]
    fn daily_is_the_latest_past_occurrence() {
        let s = Schedule::new(
            "settle",
            Every::DailyAt(NaiveTime::from_hms_opt(2, 0, 0).unwrap()),
        );
        assert_eq!(
            s.occurrence(t("2026-11-25T01:59:59Z")).1,
            t("2026-11-24T02:00:00Z")
        );
        assert_eq!(
            s.occurrence(t("2026-11-25T02:00:00Z")).1,
            t("2026-11-25T02:00:00Z")
        );
        assert_eq!(
            s.occurrence(t("2026-11-25T23:00:00Z")).1,
            t("2026-11-25T02:00:00Z")
        );
    }
}
