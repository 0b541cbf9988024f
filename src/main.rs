// glibc malloc's arena locking and consolidation showed up as ~7% of the daemon's CPU
// under load; see BENCHMARKS.md for the before/after. Built with `no_thp` (Cargo.toml):
// with transparent huge pages a worker growing by thousands of in-flight jobs spent its
// time in the kernel zeroing 2 MiB pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcpq::cli::main()
}
