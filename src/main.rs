fn main() -> std::process::ExitCode {
    maas_usage::cmd::main()
}
