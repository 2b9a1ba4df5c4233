//! The `gestalt-edge` binary: parse the arguments, run one subcommand, map a failure to its
//! exit code (the table is `cli::exit`, documented in the README).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::args::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            cli::exit::code(&err)
        }
    };
    std::process::exit(code);
}
