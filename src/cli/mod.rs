//! The `edgerec` binary's own code (not the library): the command line, and one module per
//! group of subcommands, each mapping the library's errors to exit codes and lines for an
//! operator at a serial console.

pub(crate) mod args;
pub(crate) mod box_setup;
pub(crate) mod exit;
pub(crate) mod maintenance;
pub(crate) mod record;
pub(crate) mod render;
pub(crate) mod roles;
pub(crate) mod shutdown;
