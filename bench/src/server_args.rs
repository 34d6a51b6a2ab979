//! The command line every benchmark server shares: one optional address.

/// The address a benchmark server `name` (described by `about`) listens
/// on: its one optional argument, `default` when absent, with `--help`.
/// Every server prints `listening on <addr>` once bound: `bench/run.sh`
/// and `bench/instructions.sh` start them on port 0 and wait for that line.
#[must_use]
pub fn listen_address(name: &'static str, about: &'static str, default: &'static str) -> String {
    clap::Command::new(name)
        .about(about)
        .arg(
            clap::Arg::new("addr")
                .value_name("ADDR")
                .default_value(default)
                .help(
                    "The address to listen on (port 0: a free one); the server prints \
                     `listening on <addr>` once bound",
                ),
        )
        .get_matches()
        .remove_one::<String>("addr")
        .expect("the address has a default")
}
