fn main() -> std::process::ExitCode {
    mcpq::cli::main()
}
