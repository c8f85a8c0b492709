//! The `degroup` command. Everything lives in the library; this is the process edge.

fn main() -> std::process::ExitCode {
    degroup_node::cli::main()
}
