fn main() -> std::process::ExitCode {
    ketenpoort::cli::main()
}
