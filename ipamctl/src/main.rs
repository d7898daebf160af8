//! `ipamctl`: the operator's CLI. Everything is in the library ([`ipamctl`]); this only binds it to
//! the process's arguments, streams and exit status.

fn main() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let status = ipamctl::main_with(
        std::env::args_os(),
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    std::process::exit(status);
}
