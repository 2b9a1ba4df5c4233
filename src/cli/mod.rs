//! The binary's layer: flags in, library calls, printed results and an exit code out. Only
//! this layer writes to stdout and stderr and reads the environment.
//!
//! [`args`] is what clap parses (no logic); [`resolve`] turns it, with a board profile, into
//! the settings a command runs with, once; [`cmd`] holds one short file per subcommand;
//! [`report`] the tables and human output; [`exit`] the exit-code table.

pub mod args;
mod cmd;
pub mod exit;
pub(crate) mod out;
mod report;
mod resolve;

use gestalt_edge::Result;

use args::{Cli, Command, GalleryCommand};

/// Runs one command; returns the exit code for a run that got to the end (a batch with
/// failed photos returns the first failure's code).
pub fn run(cli: Cli) -> Result<i32> {
    // tests stop a write at a named stage to kill it there (see gestalt_edge::fsio)
    if let Some(stage) = std::env::var_os("GESTALT_EDGE_TEST_PAUSE") {
        gestalt_edge::fsio::set_test_stop(&stage.to_string_lossy());
    }
    match cli.command {
        Command::Predict(a) => cmd::predict::run(a),
        Command::Gallery(GalleryCommand::Build(a)) => cmd::gallery::build(a),
        Command::Gallery(GalleryCommand::Add(a)) => cmd::gallery::add(a),
        Command::Gallery(GalleryCommand::Inspect(a)) => cmd::gallery::inspect(a),
        Command::Gallery(GalleryCommand::Import(a)) => cmd::import::run(a),
        Command::Gallery(GalleryCommand::Remove(a)) => cmd::curate::remove(a),
        Command::Gallery(GalleryCommand::Relabel(a)) => cmd::curate::relabel(a),
        Command::Gallery(GalleryCommand::List(a)) => cmd::curate::list(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Model(c) => cmd::model::run(c),
        Command::Sign(a) => cmd::sign::run(a),
    }
}
