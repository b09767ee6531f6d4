//! Process-wide state and events: the state the hook reads (`runtime`: configuration,
//! filters, function table, pipeline), the cell that the GIL serialises (`gil_cell`), notes
//! about other tools (`diagnostics`) and the SIGTERM flush (`sigterm`).
//!
//! The bottom layer: calls nothing of this crate above it (what SIGTERM runs is handed to
//! `sigterm` at install); called by every other part.

pub mod diagnostics;
pub mod gil_cell;
pub mod runtime;
pub mod sigterm;
