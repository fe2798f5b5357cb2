//! The `clerk` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    clerk::cli::main()
}
