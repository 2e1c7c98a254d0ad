fn main() {
    std::process::exit(maas_usage::app::main());
}
