//! Every job kind and recurring schedule, registered in one place.

use crate::app::App;
use crate::config::Settings;
use crate::maintenance::MaintenanceJob;
use crate::orders::parse::ParseOrder;
use crate::orders::pipeline::ValidateOrder;
use crate::queue::Registry;
use crate::queue::schedule::Schedule;

/// The job kinds this build knows.
pub fn registry() -> Registry<App> {
    Registry::default()
        .register::<ParseOrder>()
        .register_batch::<ValidateOrder>()
        .register::<MaintenanceJob>()
}

/// The recurring schedules, with cron expressions from the settings.
pub fn schedules(settings: &Settings) -> anyhow::Result<Vec<Schedule>> {
    Ok(vec![Schedule::new::<MaintenanceJob>(
        "maintenance",
        &settings.schedules.maintenance,
    )?])
}
