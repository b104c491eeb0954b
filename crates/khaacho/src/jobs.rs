//! Every job kind and recurring schedule, registered in one place.

use crate::admin::sla::CheckSla;
use crate::app::App;
use crate::catalog::intelligence::SnapshotPrices;
use crate::channels::outbox::{OutboxSweep, SendMessage};
use crate::channels::service::conversation::HandleInbound;
use crate::config::Settings;
use crate::credit::reminders::PaymentReminders;
use crate::credit::scoring::{RescoreRetailer, RunControls, ScoreAccounts};
use crate::fulfilment::jobs::FulfilmentTick;
use crate::fulfilment::routing::RouteOrders;
use crate::fulfilment::scores::ScoreVendors;
use crate::maintenance::MaintenanceJob;
use crate::orders::pipeline::ProcessOrders;
use crate::orders::pipeline::heal::HealOrders;
use crate::orders::pipeline::parse::ParseOrder;
use crate::orders::transition::OrderChanged;
use crate::queue::Registry;
use crate::queue::schedule::Schedule;
use crate::webhooks::sender::{DeliverWebhook, WebhookSweep};

/// The job kinds this build knows.
pub fn registry() -> Registry<App> {
    Registry::default()
        .register::<ParseOrder>()
        .register_batch::<ProcessOrders>()
        .register_batch::<RouteOrders>()
        .register_batch::<OrderChanged>()
        .register::<FulfilmentTick>()
        .register::<HealOrders>()
        .register::<MaintenanceJob>()
        .register::<ScoreAccounts>()
        .register::<RescoreRetailer>()
        .register::<RunControls>()
        .register::<PaymentReminders>()
        .register::<ScoreVendors>()
        .register::<SnapshotPrices>()
        .register::<HandleInbound>()
        .register::<SendMessage>()
        .register::<OutboxSweep>()
        .register::<CheckSla>()
        .register::<DeliverWebhook>()
        .register::<WebhookSweep>()
}

/// The recurring schedules, with cron expressions from the settings.
pub fn schedules(settings: &Settings) -> anyhow::Result<Vec<Schedule>> {
    let s = &settings.schedules;
    Ok(vec![
        Schedule::new::<MaintenanceJob>("maintenance", &s.maintenance)?,
        Schedule::new::<ScoreAccounts>("credit_scores", &s.credit_scores)?,
        Schedule::new::<RunControls>("credit_controls", &s.credit_controls)?,
        Schedule::new::<PaymentReminders>("payment_reminders", &s.payment_reminders)?,
        Schedule::new::<FulfilmentTick>("fulfilment", &s.fulfilment)?,
        Schedule::new::<HealOrders>("healing", &s.healing)?,
        Schedule::new::<ScoreVendors>("vendor_scores", &s.vendor_scores)?,
        Schedule::new::<SnapshotPrices>("price_intelligence", &s.price_intelligence)?,
        Schedule::new::<OutboxSweep>("channels_outbox", &s.channels_outbox)?,
        Schedule::new::<CheckSla>("sla_check", &s.sla_check)?,
        Schedule::new::<WebhookSweep>("webhooks", &s.webhooks)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::registry;

    /// The steps fed one order at a time (new orders; their changes) wait `queue.linger_ms`
    /// to run as batches; routing, whose jobs the validation batch enqueues together, and the
    /// queues of single jobs do not.
    #[test]
    fn only_the_batch_queues_fed_one_job_at_a_time_linger() {
        let r = registry();
        assert!(r.lingers("validate"));
        assert!(r.lingers("events"));
        assert!(!r.lingers("route"));
        assert!(!r.lingers("maintenance"));
        assert!(!r.lingers("no-such-queue"));
    }
}
