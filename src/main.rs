//! `gate`: parse arguments, run, exit with the command's code.

fn main() {
    std::process::exit(jitgate::cli::main());
}
