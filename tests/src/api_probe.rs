//! A timer for the center's fleet API that the simulated fleet's load cannot skew.

use std::time::{Duration, Instant};

/// Times `GET /api/v1/nodes` as an operator's browser would see it: its own connection on
/// its own thread. Sent through the agents' client and runtime, the call waited behind
/// thousands of queued reports during a storm (20-29 s in the simulator, while `curl`
/// beside it got answers in 1-51 ms), which measured the simulator, not the center.
pub struct ApiProbe {
    requests: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Option<f64>>>,
}

impl ApiProbe {
    /// Starts the probe's thread, which times a `GET url` with `key` on each [`ApiProbe::time`].
    pub fn start(url: String, key: String, timeout: Duration) -> anyhow::Result<Self> {
        let (requests, rx) =
            std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Option<f64>>>();
        // Built on the probe's thread: a runtime cannot be entered from the agents' one.
        std::thread::Builder::new()
            .name("api-probe".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => return eprintln!("fleet-sim: no runtime for the API probe: {e}"),
                };
                let client = runtime.block_on(async {
                    reqwest::Client::builder()
                        .timeout(timeout)
                        .pool_max_idle_per_host(1)
                        .build()
                });
                let client = match client {
                    Ok(c) => c,
                    Err(e) => return eprintln!("fleet-sim: no client for the API probe: {e}"),
                };
                for reply in rx {
                    let ms = runtime.block_on(async {
                        let t0 = Instant::now();
                        let r = client.get(&url).bearer_auth(&key).send().await.ok()?;
                        if !r.status().is_success() {
                            return None;
                        }
                        r.bytes().await.ok()?;
                        Some(t0.elapsed().as_secs_f64() * 1000.0)
                    });
                    let _ = reply.send(ms);
                }
            })?;
        Ok(Self { requests })
    }

    /// One timed call, in milliseconds; `None` when it failed.
    pub async fn time(&self) -> Option<f64> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests.send(reply).ok()?;
        answer.await.ok().flatten()
    }
}
