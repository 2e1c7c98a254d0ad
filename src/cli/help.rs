//! The long help of `run` and `serve`: exit codes, several clouds, the agents' configuration.

pub(super) const RUN_HELP: &str = "Exit codes: 0 when at least one series was collected (failed series are
one stderr line each); 1 when nothing was collected; 2 for an invalid spec or missing credentials.
stderr lines carry Telegraf's level prefixes (E!, W!, I!, D!).

Several accounts and regions: `clouds:` in the spec (each entry named, with every key of `cloud`,
`assume_agency` for an agency of another account through STS). Their series carry the tag
cloud=NAME; one cloud's failure fails its own series (E! cloud=NAME: ...), exit 0 when another
cloud delivered. The flags of one cloud (--region, --project-id, --endpoint, --iam-endpoint,
--credentials-file) are refused with `clouds:`; --ca-file and --simulator apply to every cloud.

Telegraf inputs.exec:
  commands = [[\"/usr/bin/maas-usage\", \"run\", \"--spec\", \"/etc/maas-usage/spec.yaml\"]]
  data_format = \"influx\"   timeout = \"30s\" (above limits.timeout)
Telegraf inputs.execd (signal = \"STDIN\"):
  command = [\"/usr/bin/maas-usage\", \"run\", \"--execd\", \"--spec\", \"/etc/maas-usage/spec.yaml\"]";

pub(super) const SERVE_HELP: &str =
    "Collects at start, then every --interval (period buckets as they settle), with the same
request budget and state directory as `run`; its period checkpoints are its own, so a `run` on
the same state directory still gets every bucket. A scrape never calls the cloud.
GET /metrics: the last successful collection (Prometheus text; OpenMetrics when Accept asks).
GET /healthz: 200 while that collection is younger than two intervals, else 503.
SIGTERM or SIGINT stops it; exit 0. stderr lines carry Telegraf's level prefixes.

Prometheus:
  scrape_configs:
    - job_name: maas-usage
      scrape_interval: 60s
      static_configs: [{targets: [\"127.0.0.1:9464\"]}]
OpenTelemetry Collector (receivers: prometheus), the same scrape_configs under
  prometheus: {config: {scrape_configs: [...]}}";
