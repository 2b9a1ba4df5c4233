//! The `gestalt-edge` binary: parse the arguments, run one subcommand, map a failure to its
//! exit code (the table is `cli::exit`, documented in the README).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::args::Cli::parse();
    let mut code = match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            cli::exit::code(&err)
        }
    };
    // a result that did not reach its reader is a failed run, whatever else happened
    if let Err(e) = cli::out::finish() {
        eprintln!("error: cannot write the result to standard output: {e}");
        code = cli::exit::IO;
    }
    std::process::exit(code);
}
