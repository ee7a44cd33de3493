//! The back ends of the subcommands that are not a run: `train`, `attribute`, `explain` and
//! `compare`, each parsed from its flags into a job and carried out on the libraries.

pub mod attribute;
pub mod compare;
pub mod explain;
pub mod inspect;
pub mod train;
