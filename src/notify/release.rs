//! The `release` channel: the outbox rows that release a job a platform holds (play a
//! GitLab job, answer a GitHub deployment or a Jenkins input). Their sending needs the
//! forges, which adapters may not import, so the worker is handed a [`ReleaseSender`]
//! (the service's `Releaser`) and routes the channel's rows to it, with the same retry,
//! backoff and give-up as every channel.

use crate::store::NotificationRow;

use super::DeliveryError;

pub use crate::core::release::CHANNEL as RELEASE;

/// Sends one queued release row (its payload is a `core::release::Payload`).
#[async_trait::async_trait]
pub trait ReleaseSender: Send + Sync {
    /// `Ok` once the platform did what the row asks, or answered that it was done
    /// already: a retry must never double an effect.
    async fn send(&self, row: &NotificationRow) -> Result<(), DeliveryError>;
}
