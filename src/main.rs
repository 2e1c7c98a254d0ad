fn main() {
    std::process::exit(maas_usage::cmd::main());
}
