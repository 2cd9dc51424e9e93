//! `gate`: parse arguments, run, exit with the command's code.

use std::process::ExitCode;

fn main() -> ExitCode {
    jitgate::cli::main()
}
