//! `minimax-dl sim`: run the simulator (the `minimax-sim` crate) as a
//! stand-alone process, so a deployment can be tried end to end without
//! spending credits. The flags and the printed line live here, at the edge;
//! the simulator knows nothing of the command line.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use minimax_sim::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, HiddenLimit, SimConfig, Simulator,
};

/// Command-line options of the simulator.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct SimArgs {
    /// Address of the fake API host (loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8380")]
    pub listen: SocketAddr,

    /// Address of the fake CDN host (loopback only; a different origin from
    /// the API, as in production).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8381")]
    pub cdn_listen: SocketAddr,

    /// Seed of the generated content, ETags and URL signatures.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Size of every file, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub file_size: u64,

    /// Require this API key (`Authorization: Bearer KEY`); any key is accepted
    /// when absent.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Advertise the real size in `file.bytes` (the real API says 0 for videos).
    #[arg(long)]
    pub report_bytes: bool,

    /// Lifetime of issued download URLs, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub url_ttl: u64,

    /// Answer every n-th retrieve call with status 1002 (rate limited).
    #[arg(long, value_name = "N")]
    pub rate_limit_every: Option<u32>,

    /// A hidden rate limit: beyond N answered retrieve calls in any 60 s, answer 1002
    /// (as an account's limit does), for trying requests_per_minute = "auto".
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Abort every n-th CDN body half way through the file.
    #[arg(long, value_name = "N")]
    pub drop_every: Option<u32>,

    /// Throttle each CDN connection to this many bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub bandwidth: Option<u64>,

    /// Hand out download URLs `URL/{file_id}.bin` on another server (e.g. a
    /// local nginx for benchmarks) instead of the built-in CDN.
    #[arg(long, value_name = "URL")]
    pub external_cdn: Option<String>,

    /// How long a task created with `POST /v1|v2/video_generation` generates, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub task_generation_secs: u64,

    /// Every n-th created task fails (status_code 1027, output rejected).
    #[arg(long, value_name = "N")]
    pub task_fail_every: Option<u32>,

    /// POST each task's final update this many times to its callback_url.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub callback_repeats: u32,

    /// Most tasks a page of the v2 task list serves, whatever is asked
    /// (MiniMax's documented example serves 20).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub list_page_max: u32,

    /// MiniMax's clock minus this host's, in seconds (API `Date`, URL
    /// `Expires`, the CDN's expiry check): a host clock that is wrong.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_secs: i64,
}

impl Default for SimArgs {
    fn default() -> Self {
        SimArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8380)),
            cdn_listen: SocketAddr::from(([127, 0, 0, 1], 8381)),
            seed: 42,
            file_size: 1 << 20,
            api_key: None,
            report_bytes: false,
            url_ttl: 3600,
            rate_limit_every: None,
            rpm: None,
            drop_every: None,
            bandwidth: None,
            external_cdn: None,
            task_generation_secs: 20,
            task_fail_every: None,
            callback_repeats: 1,
            list_page_max: 20,
            clock_offset_secs: 0,
        }
    }
}

impl SimArgs {
    /// The simulator configuration these options describe.
    pub fn to_config(&self) -> SimConfig {
        let mut faults = Faults {
            bandwidth_bytes_per_sec: self.bandwidth,
            ..Faults::default()
        };
        if let Some(n) = self.rate_limit_every {
            faults.api.push(
                ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into())).every(n),
            );
        }
        if let Some(n) = self.drop_every {
            // "Half way" through the file; a resumed request for less than
            // that completes normally.
            faults
                .cdn
                .push(CdnFaultRule::new(CdnFault::DropAfter(self.file_size / 2)).every(n));
        }
        SimConfig {
            seed: self.seed,
            api_key: self.api_key.clone(),
            default_file_size: self.file_size,
            report_bytes: self.report_bytes,
            url_ttl: Duration::from_secs(self.url_ttl),
            faults,
            external_cdn: self.external_cdn.clone(),
            task_generation: Duration::from_secs(self.task_generation_secs),
            task_fail_every: self.task_fail_every,
            callback_repeats: self.callback_repeats,
            list_page_max: self.list_page_max,
            clock_offset_secs: self.clock_offset_secs,
            hidden_limit: self.rpm.map(|calls| HiddenLimit {
                calls,
                window: Duration::from_secs(60),
            }),
            ..SimConfig::default()
        }
    }
}

/// Runs the simulator until `shutdown` is cancelled.
///
/// Prints one line, `minimax-dl simulator: api http://…, cdn http://…`, to
/// stdout once both listeners are bound, so scripts can wait for it.
/// Refuses non-loopback addresses.
pub async fn run_cli(args: SimArgs, shutdown: CancellationToken) -> io::Result<()> {
    let sim = Simulator::start_on(args.to_config(), args.listen, args.cdn_listen).await?;
    crate::outln!(
        "minimax-dl simulator: api {}, cdn {}",
        sim.api_base(),
        sim.cdn_base()
    );
    shutdown.cancelled().await;
    sim.shutdown_and_wait(Duration::from_secs(5)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_an_address_off_loopback() {
        let args = SimArgs {
            listen: "0.0.0.0:0".parse().unwrap(),
            ..SimArgs::default()
        };
        assert!(run_cli(args, CancellationToken::new()).await.is_err());
    }

    #[tokio::test]
    async fn run_cli_runs_until_cancelled() {
        let token = CancellationToken::new();
        let args = SimArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            cdn_listen: "127.0.0.1:0".parse().unwrap(),
            ..SimArgs::default()
        };
        let task = tokio::spawn(run_cli(args, token.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops when cancelled")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn cli_args_parse_and_map() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimArgs,
        }
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.sim, SimArgs::default());
        let config = cli.sim.to_config();
        let default = SimConfig::default();
        assert_eq!(config, default);

        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.2:1",
            "--cdn-listen",
            "[::1]:2",
            "--seed",
            "7",
            "--file-size",
            "1000",
            "--api-key",
            "k",
            "--report-bytes",
            "--url-ttl",
            "60",
            "--rate-limit-every",
            "3",
            "--drop-every",
            "2",
            "--bandwidth",
            "5000",
        ])
        .unwrap();
        let c = cli.sim.to_config();
        assert_eq!(cli.sim.listen.to_string(), "127.0.0.2:1");
        assert_eq!(cli.sim.cdn_listen.to_string(), "[::1]:2");
        assert_eq!(c.seed, 7);
        assert_eq!(c.default_file_size, 1000);
        assert_eq!(c.api_key.as_deref(), Some("k"));
        assert!(c.report_bytes);
        assert_eq!(c.url_ttl, Duration::from_secs(60));
        assert_eq!(
            c.faults.api,
            [ApiFaultRule::new(ApiFault::Code(1002, "rate limit exceeded(RPM)".into())).every(3)]
        );
        assert_eq!(
            c.faults.cdn,
            [CdnFaultRule::new(CdnFault::DropAfter(500)).every(2)]
        );
        assert_eq!(c.faults.bandwidth_bytes_per_sec, Some(5000));
    }
}
