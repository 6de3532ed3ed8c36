//! replbox: a self-hosted online IDE and REPL. See DESIGN.md and README.md.

pub mod config;
pub mod sandbox;
