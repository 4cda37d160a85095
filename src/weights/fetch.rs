//! Downloads over HTTPS (cargo feature `fetch`: ureq with rustls and the webpki root
//! certificates). The body is received into memory, so a failed or interrupted download never
//! touches the cache; every read has a timeout, so a stalled server ends the download.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::store::MAX_FILE_BYTES;

/// Environment variable with the network timeout in seconds (connecting, and each read).
pub const TIMEOUT_ENV: &str = "NEURAL_STYLE_FETCH_TIMEOUT";
/// How many network timeouts a whole download may take (a server sending a byte a second never
/// stalls a read, but the download ends).
pub const DEADLINE_TIMEOUTS: u32 = 20;
/// The network timeout without [`TIMEOUT_ENV`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The network timeout: `$NEURAL_STYLE_FETCH_TIMEOUT` seconds, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Result<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .with_context(|| {
                format!("{TIMEOUT_ENV} must be a positive number of seconds, at most {}, got {text:?}", u64::MAX)
            }),
        Err(_) => Ok(DEFAULT_TIMEOUT),
    }
}

/// Downloads `url` (https; plain http only from this machine, for tests) and returns the body:
/// each read must come within `timeout` and the whole download within [`DEADLINE_TIMEOUTS`] of
/// them. `progress(received, total)` hears each chunk; `total` is the announced length, if any.
pub fn download(url: &str, timeout: Duration, mut progress: impl FnMut(u64, Option<u64>)) -> Result<Vec<u8>> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| anyhow!("invalid URL {url:?}"))?;
    let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => bail!("refusing to download {url}: the URL must start with https://"),
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .https_only(!loopback)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_global(Some(timeout.saturating_mul(DEADLINE_TIMEOUTS)))
        .build()
        .into();
    let failed = |e: ureq::Error| describe(e, url, timeout);
    let mut response = agent.get(url).call().map_err(failed)?;
    let total = response.body().content_length();
    if let Some(total) = total
        && total > MAX_FILE_BYTES
    {
        bail!("{url} is {} MiB, more than the {} MiB accepted", total >> 20, MAX_FILE_BYTES >> 20);
    }
    let mut reader = response.body_mut().with_config().limit(MAX_FILE_BYTES).reader();
    let mut data = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut chunk = vec![0; 64 << 10];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = match e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
                    true => *e.into_inner().and_then(|inner| inner.downcast().ok()).expect("checked"),
                    false => ureq::Error::Io(e),
                };
                let received = data.len();
                let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
                return Err(anyhow!("{} (received {received} of {total} bytes)", describe(e, url, timeout)));
            }
        };
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        progress(data.len() as u64, total);
    }
    if let Some(total) = total
        && data.len() as u64 != total
    {
        bail!("download of {url} was cut off: received {} of {total} bytes", data.len());
    }
    Ok(data)
}

/// One line for a failed request.
fn describe(e: ureq::Error, url: &str, timeout: Duration) -> anyhow::Error {
    let timed_out = match &e {
        ureq::Error::Timeout(ureq::Timeout::Global) => {
            return anyhow!(
                "download of {url} took longer than {:.1} s, {DEADLINE_TIMEOUTS} times {TIMEOUT_ENV} (set it to wait \
                 longer)",
                timeout.as_secs_f64() * f64::from(DEADLINE_TIMEOUTS)
            );
        }
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock),
        _ => false,
    };
    if timed_out {
        return anyhow!(
            "download of {url} stalled: no data for {:.1} s (set {TIMEOUT_ENV} to wait longer)",
            timeout.as_secs_f64()
        );
    }
    match e {
        ureq::Error::StatusCode(code) => anyhow!("download of {url} failed: the server answered HTTP {code}"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            anyhow!("download of {url} was cut off: the server closed the connection early")
        }
        other => anyhow!("download of {url} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_except_to_this_machine() {
        let err = download("http://example.invalid/model.tgz", Duration::from_secs(1), |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("must start with https://"), "{err}");
        let err = download("ftp://127.0.0.1/model.tgz", Duration::from_secs(1), |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("must start with https://"), "{err}");
    }
}
