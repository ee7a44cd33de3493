//! The model crate: sequential layer graphs with named stages, presets, seeded initialisation,
//! re-initialisation as a pure function, training, safetensors I/O with PyTorch names, and the
//! project's own max-pool (candle's backward is wrong, docs/architecture.md).

pub mod architecture;
pub mod checkpoint;
pub mod error;
pub mod forward;
pub mod graph;
pub mod graph_candle;
pub mod graph_engine;
pub mod graph_init;
pub mod graph_lrp;
pub mod graph_presets;
pub mod graph_reference;
pub mod graph_train;
pub mod init;
pub mod layer;
pub mod lrp;
pub mod net;
pub mod onnx;
pub mod ops;
pub mod optimizer;
pub mod presets;
pub mod train;
pub mod weights;

pub use architecture::{Architecture, ArchitectureSpec, Layer, Op};
pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use error::ModelError;
pub use forward::{Mode, Model};
pub use init::{Reinit, init_weights, reinitialize};
pub use layer::{Init, LayerSpec};
pub use lrp::LrpRule;
pub use net::{Net, NetModel, NetSpec};
pub use ops::ReluMode;
pub use presets::{PRESETS, preset};
pub use train::{
    BatchProgress, EpochStats, LrSchedule, OptimizerKind, TrainSpec, Training, train, train_from, train_observed,
};
pub use weights::Weights;
