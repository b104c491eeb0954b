//! Every job kind and recurring schedule, registered in one place.

use crate::app::App;
use crate::config::Settings;
use crate::maintenance::MaintenanceJob;
use crate::orders::pipeline::ProcessOrders;
use crate::orders::pipeline::parse::ParseOrder;
use crate::orders::transition::OrderChanged;
use crate::queue::Registry;
use crate::queue::schedule::Schedule;

/// The job kinds this build knows.
pub fn registry() -> Registry<App> {
    Registry::default()
        .register::<ParseOrder>()
        .register_batch::<ProcessOrders>()
        .register_batch::<OrderChanged>()
        .register::<MaintenanceJob>()
}

/// The recurring schedules, with cron expressions from the settings.
pub fn schedules(settings: &Settings) -> anyhow::Result<Vec<Schedule>> {
    Ok(vec![Schedule::new::<MaintenanceJob>(
        "maintenance",
        &settings.schedules.maintenance,
    )?])
}
