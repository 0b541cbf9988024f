// glibc malloc's arena locking and consolidation showed up as ~7% of the daemon's CPU
// under load; see BENCHMARKS.md for the before/after.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcpq::cli::main()
}
