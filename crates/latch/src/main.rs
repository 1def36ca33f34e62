//! `latch`: the token service and its administration (see the library, [`latch`]).

fn main() -> std::process::ExitCode {
    latch::main()
}
