//! The `flavio` binary: see [`flavio_node::cli`].

fn main() -> std::process::ExitCode {
    flavio_node::cli::main()
}
