//! The operations behind the HTTP API: register, deregister, maintenance, the
//! bookkeeping of bound watch streams, and waiting for the store.

use rollcall_proto::{Registration, ServiceUrl, Timestamp};
use tokio::sync::oneshot;

use super::*;
use crate::callbacks::Claimed;
use crate::catalog::Instance;

/// Why a write (register, deregister, maintenance) changed nothing. The
/// HTTP layer maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the catalog holds its most instances ({0}, --max-instances); nothing was changed")]
    CatalogFull(usize),
    #[error("no instance is registered at {0}")]
    NotRegistered(ServiceUrl),
    #[error("the catalog could not be written ({0}); nothing was changed")]
    Store(StoreError),
    #[error("the registry is shutting down")]
    ShuttingDown,
}

impl Registry {
    /// Runs a write to its end in a task of the registry's own: its commit
    /// and, if the store refuses it, its undo complete whatever the client
    /// does (a handler's future is dropped when its client hangs up).
    async fn to_completion<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = Result<T, WriteError>> + Send + 'static,
    ) -> Result<T, WriteError> {
        self.inner
            .tasks
            .spawn(write)
            .await
            .unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Registers an instance: stores it, answers once its initial patch is
    /// delivered or the delivery timeout passes.
    pub async fn register(&self, registration: Claimed<Registration>) -> Result<(), WriteError> {
        let registration = registration.into_inner();
        let registry = self.clone();
        self.to_completion(async move { registry.register_now(registration).await })
            .await
    }

    async fn register_now(&self, registration: Registration) -> Result<(), WriteError> {
        let url = registration.url.clone();
        let max = self.inner.config.max_instances;
        let mut previous = None;
        let (waiter, committed) = self
            .run(true, |core, now| {
                if core.catalog.len() >= max && core.catalog.get(&registration.url).is_none() {
                    return (Err(WriteError::CatalogFull(max)), Effects::default());
                }
                previous = core.catalog.get(&url).map(Instance::stored);
                let registered = core.catalog.register(registration, now);
                // Its initial patch is waited for: delivered from here, or
                // recorded by the replica that delivers to it.
                let owned = core.catalog.owns(&url);
                let waiter = registered.initial_patch.map(|ticket| {
                    let (tx, rx) = oneshot::channel();
                    if owned {
                        core.waiters.insert(ticket.clone(), tx);
                        (Some(ticket), rx)
                    } else {
                        core.told_elsewhere.insert(url.clone(), tx);
                        (None, rx)
                    }
                });
                (Ok(waiter), registered.effects)
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        let waiter = waiter?;
        if let Some(committed) = committed
            && let Err(reason) = store_outcome(committed).await
        {
            // Leave what was there: the earlier registration of a known
            // instance, nothing for a new one.
            self.lock().told_elsewhere.remove(&url);
            let _ = self
                .run(false, |core, now| {
                    let undone = match previous {
                        Some(previous) => core.catalog.reinstate(previous, now),
                        None => core.catalog.deregister(&url, now).unwrap_or_default(),
                    };
                    ((), undone)
                })
                .await;
            return Err(WriteError::Store(reason));
        }
        self.inner.metrics.registrations.inc();
        if let Some((ticket, delivered)) = waiter {
            let timeout = self.inner.config.delivery_timeout;
            if !matches!(tokio::time::timeout(timeout, delivered).await, Ok(Ok(true))) {
                let mut core = self.lock();
                match ticket {
                    Some(ticket) => core.waiters.remove(&ticket),
                    None => core.told_elsewhere.remove(&url),
                };
                tracing::debug!(%url, "initial patch not delivered before answering; it will be retried");
            }
        }
        Ok(())
    }

    /// Deregisters an instance.
    pub async fn deregister(&self, url: &Claimed<ServiceUrl>) -> Result<(), WriteError> {
        let registry = self.clone();
        let url = url.get().clone();
        self.to_completion(async move {
            let saved = registry.read(|c| c.get(&url).map(Instance::stored));
            registry
                .change_instance(
                    &url,
                    |catalog, now| catalog.deregister(&url, now),
                    |catalog, now| saved.map(|previous| catalog.reinstate(previous, now)),
                )
                .await?;
            registry.inner.metrics.deregistrations.inc();
            Ok(())
        })
        .await
    }

    /// Switches an instance's maintenance on or off.
    pub async fn set_maintenance(
        &self,
        url: &Claimed<ServiceUrl>,
        on: bool,
    ) -> Result<(), WriteError> {
        let registry = self.clone();
        let url = url.get().clone();
        self.to_completion(async move {
            registry
                .change_instance(
                    &url,
                    |catalog, now| catalog.set_maintenance(&url, on, now),
                    |catalog, now| catalog.set_maintenance(&url, !on, now),
                )
                .await
        })
        .await
    }

    /// Runs a command about one registered instance (`None`: it is not) and
    /// waits until what it changed is committed. If the store cannot commit
    /// it, `undo` puts the live catalog back as it was, so that "nothing was
    /// changed" is true.
    async fn change_instance(
        &self,
        url: &ServiceUrl,
        command: impl FnOnce(&mut Catalog, Timestamp) -> Option<Effects>,
        undo: impl FnOnce(&mut Catalog, Timestamp) -> Option<Effects>,
    ) -> Result<(), WriteError> {
        let (found, committed) = self
            .run(true, |core, now| match command(&mut core.catalog, now) {
                Some(effects) => (true, effects),
                None => (false, Effects::default()),
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        if !found {
            return Err(WriteError::NotRegistered(url.clone()));
        }
        if let Some(committed) = committed
            && let Err(reason) = store_outcome(committed).await
        {
            let _ = self
                .run(false, |core, now| {
                    ((), undo(&mut core.catalog, now).unwrap_or_default())
                })
                .await;
            return Err(WriteError::Store(reason));
        }
        Ok(())
    }

    /// Records a check's result. A status change it makes is followed to
    /// the store: one the store could not commit (etcd unreachable, a full
    /// disk) is written again by the instance's next check, so the others
    /// learn it once the store is back.
    pub async fn record_check(
        &self,
        request: &crate::catalog::CheckRequest,
        outcome: &crate::catalog::health::CheckOutcome,
    ) -> Result<(), StoreError> {
        let ((), committed) = self
            .run(true, |core, now| {
                ((), core.catalog.check_result(request, outcome, now))
            })
            .await?;
        if let Some(committed) = committed {
            let registry = self.clone();
            let url = request.url.clone();
            // Waited for apart from the check: it holds a check permit.
            self.spawn(async move {
                let ok = store_outcome(committed).await.is_ok();
                registry.run_now(|core, _| {
                    core.catalog.status_written(&url, ok);
                    ((), Effects::default())
                });
            });
        }
        Ok(())
    }

    /// Whether a watch stream bound to `url` is open (a running SDK service).
    pub fn holds_stream(&self, url: &ServiceUrl) -> bool {
        self.lock().bound_streams.get(url).is_some_and(|n| *n > 0)
    }

    /// A watch stream bound to `url` opened.
    pub(crate) fn watch_opened(&self, url: &ServiceUrl) {
        *self.lock().bound_streams.entry(url.clone()).or_default() += 1;
    }

    /// An instance's watch stream closed.
    pub fn watch_closed(&self, url: &ServiceUrl) {
        {
            let mut core = self.lock();
            if let Some(n) = core.bound_streams.get_mut(url) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    core.bound_streams.remove(url);
                }
            }
        }
        self.contact_lost(url);
    }

    /// Contact with a registered instance was lost (a stream or a held
    /// connection closed, or its stream went silent): it is checked at once.
    pub fn contact_lost(&self, url: &ServiceUrl) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.run_now(|core, now| ((), core.catalog.lost_contact(url, now)));
    }

    /// Waits until everything handed to the store so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let permit = self.inner.store.reserve().await?;
        let (tx, rx) = oneshot::channel();
        permit.send(Batch {
            ops: Vec::new(),
            done: Some(tx),
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Stopped),
        }
    }
}

/// Whether the store committed a batch, and if not, why (the store names
/// itself: SQLite, etcd).
async fn store_outcome(
    committed: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    committed.await.unwrap_or(Err(StoreError::Stopped))
}
