//! The figures and `report.md` of a run directory, drawn from its files alone
//! (docs/run-directory.md): `sanity report` and the figures `sanity run` and `sanity explain`
//! draw. Depends on the formats (sanity-rundir), not on the run engine.

pub mod figures;
pub mod report;

pub use report::{FIGURES_DIR, REPORT_MD, ReportOptions, report, report_dirs};
