//! `minimax-dl sim`: run the simulator (the `minimax-sim` crate) as a
//! stand-alone process, so a deployment can be tried end to end without
//! spending credits. The flags and the printed line live here, at the edge;
//! the simulator knows nothing of the command line.

use std::io;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::SimArgs;
use minimax_sim::{
    ApiFault, ApiFaultRule, CdnFault, CdnFaultRule, Faults, HiddenLimit, SimConfig, Simulator,
};

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
pub(crate) async fn run_cli(args: SimArgs, shutdown: CancellationToken) -> io::Result<()> {
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
