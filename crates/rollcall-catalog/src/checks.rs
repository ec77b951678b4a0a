//! Health checks: handing out due checks, taking their results (thresholds
//! decide transitions; a transition notifies dependents), a closed watch
//! stream (suspicion), and the periodic tick (expiry, resync back-offs).

use rollcall_proto::{ServiceUrl, Timestamp};

use super::health::{self, CheckOutcome, Health, Transition};
use super::records::StoreOp;
use super::*;

impl Catalog {
    /// Hands out the checks due at `now`, at most `max` of them.
    pub fn take_due_checks(&mut self, now: Timestamp, max: usize) -> Vec<CheckRequest> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some((at, _)) = self.schedule.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((at, url)) = self.schedule.pop_first() else {
                break;
            };
            let owned = self.ownership.checks(&url);
            let interval = self.config.health.interval;
            let Some(instance) = self.instances.get_mut(&url) else {
                continue;
            };
            let Some(heartbeat_url) = instance.registration.heartbeat_url.clone() else {
                instance.next_check = None;
                continue;
            };
            if !owned {
                // Another replica checks it; look again an interval on (it
                // may be ours by then).
                instance.checked_elsewhere = true;
                let next = now.plus(health::jittered(interval, instance.seed ^ instance.checks));
                instance.next_check = Some(next);
                self.schedule.insert((next, url));
                continue;
            }
            instance.next_check = None;
            instance.check_in_flight = true;
            due.push(CheckRequest {
                url,
                heartbeat_url,
                suspect: instance.suspect_since.is_some(),
                generation: instance.generation,
                due: at,
                started: now,
            });
        }
        due
    }

    /// Records the result of a check handed out by [`Catalog::take_due_checks`].
    pub fn check_result(
        &mut self,
        request: &CheckRequest,
        outcome: &CheckOutcome,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        let policy = self.config.health.clone();
        let owned = self.ownership.owns(&request.url);
        let Some(instance) = self.instances.get_mut(&request.url) else {
            return effects;
        };
        if instance.generation != request.generation || !instance.check_in_flight {
            return effects;
        }
        instance.check_in_flight = false;
        let was_failing =
            instance.health.consecutive_failures > 0 || instance.status() == Health::Critical;
        // Suspicion raised while this check was in flight is not answered by a
        // pass of it: check again at once.
        let raised_in_flight = instance
            .suspect_since
            .is_some_and(|since| since > request.started);
        instance.health.suspect = instance.suspect_since.is_some();
        // Its key in the critical index, should this check recover it.
        let critical_since = instance.health.since;
        let transition = instance.health.observe(&policy, outcome, now);
        instance.checks += 1;
        let next = if outcome.passed && raised_in_flight {
            now
        } else {
            instance.suspect_since = None;
            if instance.health.undecided() {
                now.plus(policy.fast_recheck)
            } else {
                now.plus(health::jittered(
                    policy.interval,
                    instance.seed ^ instance.checks,
                ))
            }
        };
        instance.next_check = Some(next);
        let url = request.url.clone();
        let name = instance.name().clone();
        let since = instance.health.since;
        let held_out = instance.maintenance.is_some();
        // The check loop sleeps until the earliest entry it saw; a recheck of
        // its own (the fast one after a failure) may come before that.
        effects.schedule_changed = self.schedule.first().is_none_or(|(at, _)| next < *at);
        self.schedule.insert((next, url.clone()));
        let status = instance.health.status;
        // Only what it owns (its lease holds, its feed has caught up): a
        // verdict from before a lapse must not overwrite a newer one.
        let rewrite =
            transition == Transition::None && instance.status_write == StatusWrite::Failed && owned;
        if transition != Transition::None || rewrite {
            instance.status_write = StatusWrite::Pending;
        }
        match transition {
            // The last change did not reach the store: write it again.
            Transition::None if rewrite => {
                effects.persist.push(StoreOp::SetStatus {
                    url: url.clone(),
                    status,
                    since,
                });
            }
            Transition::None => {}
            Transition::WentCritical => {
                self.bump_revision();
                self.critical.insert((since, url.clone()));
                if !held_out {
                    self.notify(&name, &url, Change::Removed, None, now, &mut effects);
                }
                effects.persist.push(StoreOp::SetStatus {
                    url: url.clone(),
                    status: Health::Critical,
                    since,
                });
                effects.persist.push(StoreOp::SetRevision(self.revision));
                let detail = outcome.error.clone();
                effects
                    .events
                    .push(self.event(now, EventKind::Critical, &name, &url, detail));
            }
            Transition::Recovered => {
                self.bump_revision();
                if !self.critical.remove(&(critical_since, url.clone())) {
                    self.critical.retain(|(_, u)| u != &url);
                }
                if !held_out {
                    self.notify(&name, &url, Change::Added, None, now, &mut effects);
                }
                effects.persist.push(StoreOp::SetStatus {
                    url: url.clone(),
                    status: Health::Passing,
                    since,
                });
                effects.persist.push(StoreOp::SetRevision(self.revision));
                effects
                    .events
                    .push(self.event(now, EventKind::Recovered, &name, &url, None));
            }
        }
        if outcome.passed && was_failing {
            if let Some(receiver) = self.receiver_mut(&url) {
                receiver.reachable_again(now);
            }
            self.wake(&url, now, &mut effects);
        }
        effects
    }

    /// The store committed (`true`) or refused a status change of `url`
    /// handed to it by a check.
    pub fn status_written(&mut self, url: &ServiceUrl, committed: bool) {
        if let Some(instance) = self.instances.get_mut(url)
            && instance.status_write == StatusWrite::Pending
        {
            instance.status_write = if committed {
                StatusWrite::Recorded
            } else {
                StatusWrite::Failed
            };
        }
    }

    /// Contact with the instance was lost here while it was still
    /// registered (its watch stream closed or went silent, or the
    /// connection the checker held to it closed): check it at once, and take
    /// it out on the first failure. In cluster mode, a replica that does not
    /// check it tells the one that does (`Effects::tell_checker`): the
    /// stream can be held by any replica.
    pub fn lost_contact(&mut self, url: &ServiceUrl, now: Timestamp) -> Effects {
        if self.ownership.is_clustered() && !self.ownership.checks(url) {
            return self.tell_checker(url, now);
        }
        self.pull_check_forward(url, now)
    }

    /// Tells the replica that checks the instance — at most once per
    /// `fast_recheck`, as often as that replica would check it for this.
    fn tell_checker(&mut self, url: &ServiceUrl, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let gap = self.config.health.fast_recheck;
        let Some(instance) = self.instances.get_mut(url) else {
            return effects;
        };
        if instance.registration.heartbeat_url.is_none() {
            return effects;
        }
        if instance
            .pulled_forward_at
            .is_none_or(|at| now >= at.plus(gap))
        {
            instance.pulled_forward_at = Some(now);
            effects.tell_checker.push(url.clone());
        }
        effects
    }

    /// Another replica lost contact with the instance (cluster mode): the
    /// replica that checks it checks it at once; the others do nothing.
    pub fn lost_contact_elsewhere(&mut self, url: &ServiceUrl, now: Timestamp) -> Effects {
        if !self.ownership.checks(url) {
            return Effects::default();
        }
        self.pull_check_forward(url, now)
    }

    /// Marks the instance suspect and moves its next check to now — but no
    /// sooner than `fast_recheck` after the last time this did: opening and
    /// closing streams bound to an instance must not turn the registry into
    /// a hammer against it. `schedule_changed` says whether it moved.
    fn pull_check_forward(&mut self, url: &ServiceUrl, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let Some(instance) = self.instances.get_mut(url) else {
            return effects;
        };
        if instance.registration.heartbeat_url.is_none() {
            return effects;
        }
        instance.suspect_since = Some(now);
        let earliest = instance
            .pulled_forward_at
            .map_or(now, |at| at.plus(self.config.health.fast_recheck).max(now));
        if !instance.check_in_flight && instance.next_check.is_none_or(|at| at > earliest) {
            instance.pulled_forward_at = Some(earliest);
            if let Some(at) = instance.next_check.replace(earliest) {
                self.schedule.remove(&(at, url.clone()));
            }
            self.schedule.insert((earliest, url.clone()));
            effects.schedule_changed = true;
        }
        effects
    }

    /// Periodic work: expire instances critical for too long; start workers for
    /// receivers whose resync back-off has passed.
    pub fn tick(&mut self, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        let limit = now.minus(self.config.deregister_after);
        // Each replica expires only what it owns (the others learn of it
        // from the store).
        let expired: Vec<(Timestamp, ServiceUrl)> = self
            .critical
            .iter()
            .take_while(|(since, _)| *since <= limit)
            .filter(|(_, url)| self.ownership.owns(url))
            .cloned()
            .collect();
        for (since, url) in expired {
            self.critical.remove(&(since, url.clone()));
            if let Some(more) = self.remove(&url, Removal::Expired, now) {
                effects.merge(more);
            }
        }
        let owing: Vec<ServiceUrl> = self.owing.iter().cloned().collect();
        for url in owing {
            match self.receiver_mut(&url) {
                Some(r) if r.resync.is_some() => self.wake(&url, now, &mut effects),
                _ => {
                    self.owing.remove(&url);
                }
            }
        }
        effects
    }
}
