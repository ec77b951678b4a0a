//! Handing catalog events to the watch streams that want them, and only
//! those: a change of `Inventory` wakes the streams watching `Inventory`
//! (by `service`, by `requires`, or bound to the changed instance) and the
//! streams that watch everything — not the thousands of SDK services that
//! each watch their own name. (A broadcast channel woke every stream on every
//! change: with 3,000 streams open a registration cost 31 times as much.)
//!
//! Each subscription has a mailbox of at most [`EVENT_BUFFER`] events; a
//! stream that falls further behind loses the oldest and is told how many
//! (`lagged`), as before.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rollcall_proto::{ServiceName, ServiceUrl};
use tokio::sync::Notify;

use crate::catalog::Event;

/// Most events one subscription holds before it loses the oldest.
pub const EVENT_BUFFER: usize = 4096;

/// What a subscription wants: every event, or those of some names and of
/// one instance.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    /// `None`: every event.
    pub names: Option<Vec<ServiceName>>,
    /// Events about this instance (its removal), whatever its name.
    pub instance: Option<ServiceUrl>,
}

#[derive(Debug, Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Arc<Event>>>,
    missed: AtomicU64,
    ready: Notify,
}

impl Mailbox {
    fn push(&self, event: &Arc<Event>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= EVENT_BUFFER {
            queue.pop_front();
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(event.clone());
        drop(queue);
        self.ready.notify_one();
    }
}

type Boxes = HashMap<u64, Arc<Mailbox>>;

#[derive(Debug, Default)]
struct Subscribers {
    next_id: u64,
    everything: Boxes,
    by_name: HashMap<ServiceName, Boxes>,
    by_instance: HashMap<ServiceUrl, Boxes>,
}

/// Every subscription, indexed by what it wants.
#[derive(Debug, Default)]
pub struct Fanout {
    subscribers: Mutex<Subscribers>,
}

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to the events `interest` names, from now on.
    pub fn subscribe(self: &Arc<Self>, interest: Interest) -> Subscription {
        let mailbox = Arc::new(Mailbox::default());
        let mut subscribers = self.lock();
        subscribers.next_id += 1;
        let id = subscribers.next_id;
        match &interest.names {
            // Every event already: bound or not, nothing more to index.
            None => {
                subscribers.everything.insert(id, mailbox.clone());
            }
            Some(names) => {
                for name in names {
                    subscribers
                        .by_name
                        .entry(name.clone())
                        .or_default()
                        .insert(id, mailbox.clone());
                }
                if let Some(url) = &interest.instance {
                    subscribers
                        .by_instance
                        .entry(url.clone())
                        .or_default()
                        .insert(id, mailbox.clone());
                }
            }
        }
        drop(subscribers);
        Subscription {
            id,
            interest,
            mailbox,
            fanout: self.clone(),
        }
    }

    /// Hands `event` to every subscription that wants it, once each.
    pub fn publish(&self, event: Event) {
        let subscribers = self.lock();
        let by_name = subscribers.by_name.get(&event.service);
        let by_instance = subscribers.by_instance.get(&event.url);
        if subscribers.everything.is_empty() && by_name.is_none() && by_instance.is_none() {
            return;
        }
        let event = Arc::new(event);
        for mailbox in subscribers.everything.values() {
            mailbox.push(&event);
        }
        for mailbox in by_name.into_iter().flat_map(HashMap::values) {
            mailbox.push(&event);
        }
        for (id, mailbox) in by_instance.into_iter().flatten() {
            // Already handed it through its name.
            if by_name.is_some_and(|boxes| boxes.contains_key(id)) {
                continue;
            }
            mailbox.push(&event);
        }
    }

    /// How many subscriptions there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        let subscribers = self.lock();
        let mut ids: std::collections::HashSet<u64> =
            subscribers.everything.keys().copied().collect();
        for boxes in subscribers
            .by_name
            .values()
            .chain(subscribers.by_instance.values())
        {
            ids.extend(boxes.keys().copied());
        }
        ids.len()
    }

    fn unsubscribe(&self, id: u64, interest: &Interest) {
        let mut subscribers = self.lock();
        subscribers.everything.remove(&id);
        for name in interest.names.iter().flatten() {
            if let Some(boxes) = subscribers.by_name.get_mut(name) {
                boxes.remove(&id);
                if boxes.is_empty() {
                    subscribers.by_name.remove(name);
                }
            }
        }
        if let Some(url) = &interest.instance
            && let Some(boxes) = subscribers.by_instance.get_mut(url)
        {
            boxes.remove(&id);
            if boxes.is_empty() {
                subscribers.by_instance.remove(url);
            }
        }
    }
}

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

/// One subscriber's end; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    interest: Interest,
    mailbox: Arc<Mailbox>,
    fanout: Arc<Fanout>,
}

impl Subscription {
    /// The next event, waiting for one; `Err(Lagged(n))` first if `n`
    /// events were lost since the last call.
    pub async fn recv(&self) -> Result<Arc<Event>, Lagged> {
        loop {
            let missed = self.mailbox.missed.swap(0, Ordering::Relaxed);
            if missed > 0 {
                return Err(Lagged(missed));
            }
            let next = self
                .mailbox
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            if let Some(event) = next {
                return Ok(event);
            }
            // A push after the check left a permit: this returns at once.
            self.mailbox.ready.notified().await;
        }
    }

    /// Events waiting (for tests).
    pub fn waiting(&self) -> usize {
        self.mailbox
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fanout.unsubscribe(self.id, &self.interest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EventKind;
    use rollcall_proto::Timestamp;

    fn event(seq: u64, name: &str, url: &str) -> Event {
        Event {
            at: Timestamp(0),
            revision: seq,
            seq,
            kind: EventKind::Registered,
            service: ServiceName::parse(name).unwrap(),
            url: ServiceUrl::parse(url).unwrap(),
            detail: None,
        }
    }

    fn names(list: &[&str]) -> Option<Vec<ServiceName>> {
        Some(
            list.iter()
                .map(|n| ServiceName::parse(n).unwrap())
                .collect(),
        )
    }

    #[tokio::test]
    async fn an_event_reaches_only_the_subscriptions_that_want_it_once_each() {
        let fanout = Arc::new(Fanout::default());
        let everything = fanout.subscribe(Interest::default());
        let inventory = fanout.subscribe(Interest {
            names: names(&["Inventory", "Billing"]),
            instance: None,
        });
        let bound = fanout.subscribe(Interest {
            names: names(&["Inventory"]),
            instance: Some(ServiceUrl::parse("http://a:1").unwrap()),
        });
        let unrelated = fanout.subscribe(Interest {
            names: names(&["Other"]),
            instance: Some(ServiceUrl::parse("http://z:9").unwrap()),
        });
        // Bound, and watching every service.
        let bound_to_all = fanout.subscribe(Interest {
            names: None,
            instance: Some(ServiceUrl::parse("http://a:1").unwrap()),
        });
        fanout.publish(event(1, "Inventory", "http://a:1"));
        assert_eq!(
            bound_to_all.waiting(),
            1,
            "once, though bound and watching all"
        );
        drop(bound_to_all);
        assert_eq!(everything.waiting(), 1);
        assert_eq!(inventory.waiting(), 1);
        assert_eq!(bound.waiting(), 1, "once, though it matches twice");
        assert_eq!(unrelated.waiting(), 0);
        // By instance alone: its name changed.
        fanout.publish(event(2, "Renamed", "http://z:9"));
        assert_eq!(unrelated.waiting(), 1);
        assert_eq!(inventory.waiting(), 1);
        assert_eq!(everything.recv().await.unwrap().seq, 1);
        assert_eq!(everything.recv().await.unwrap().seq, 2);
        assert_eq!(fanout.len(), 4);
        drop(unrelated);
        drop(bound);
        assert_eq!(fanout.len(), 2);
        let subscribers = fanout.lock();
        assert!(
            !subscribers
                .by_instance
                .contains_key(&ServiceUrl::parse("http://a:1").unwrap())
        );
        assert!(
            !subscribers
                .by_name
                .contains_key(&ServiceName::parse("Other").unwrap())
        );
    }

    #[tokio::test]
    async fn a_subscription_that_falls_behind_loses_the_oldest_and_is_told() {
        let fanout = Arc::new(Fanout::default());
        let slow = fanout.subscribe(Interest::default());
        for seq in 0..(EVENT_BUFFER as u64 + 5) {
            fanout.publish(event(seq, "A", "http://a:1"));
        }
        assert_eq!(slow.waiting(), EVENT_BUFFER);
        assert_eq!(slow.recv().await, Err(Lagged(5)));
        assert_eq!(slow.recv().await.unwrap().seq, 5);
    }

    #[tokio::test]
    async fn recv_waits_for_the_next_event() {
        let fanout = Arc::new(Fanout::default());
        let sub = fanout.subscribe(Interest::default());
        let publisher = fanout.clone();
        let waiter = tokio::spawn(async move { sub.recv().await.map(|e| e.seq) });
        tokio::task::yield_now().await;
        publisher.publish(event(7, "A", "http://a:1"));
        assert_eq!(waiter.await.unwrap(), Ok(7));
    }
}
