//! The `gestalt-edge` binary: parse arguments, run one subcommand, map the error to an exit
//! code (0 ok, 2 usage, 3 no face, 4 unreadable image, 5 bad bundle, 6 bad gallery,
//! 7 signature missing or not matching).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::args::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
