//! The command line: `--flag VALUE` or `--flag=VALUE`, checked before
//! anything is read.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notifier::{
    BatchConfig, BuildError, Client, Compression, RetryConfig, DEFAULT_QUEUE_SIZE, DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
};

use crate::output::report_failure;
use crate::tls;

/// The parsed command line.
#[derive(Debug)]
pub(crate) struct Options {
    url: String,
    workers: usize,
    queue: usize,
    timeout: Duration,
    retry: Option<u32>,
    headers: Vec<(String, String)>,
    /// `None`: the batch framing's, else the library's default.
    content_type: Option<String>,
    batch: Option<BatchConfig>,
    gzip: bool,
    /// The files of `--cacert`, in order.
    cacerts: Vec<PathBuf>,
    /// Built from `cacerts` when there is one; `None`: the library's
    /// default configuration.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `--stats-json`: the summary as one JSON line on standard output.
    pub(crate) stats_json: bool,
}

impl Options {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    ///
    /// Accepts `--flag VALUE` and `--flag=VALUE`; numbers may contain `_`.
    pub(crate) fn from_args(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Option<Options>, String> {
        let mut url = None;
        let mut options = Options {
            url: String::new(),
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            retry: None,
            headers: Vec::new(),
            content_type: None,
            batch: None,
            gzip: false,
            cacerts: Vec::new(),
            tls: None,
            stats_json: false,
        };
        let mut args = args.into_iter().map(|arg| {
            arg.into_string()
                .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
        });
        while let Some(arg) = args.next() {
            let arg = arg?;
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            if arg == "--gzip" {
                options.gzip = true;
                continue;
            }
            if arg == "--stats-json" {
                options.stats_json = true;
                continue;
            }
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg, None),
            };
            let mut value = || match inline_value.clone() {
                Some(value) => Ok(value),
                None => args
                    .next()
                    .unwrap_or_else(|| Err(format!("{flag} needs a value"))),
            };
            match flag.as_str() {
                "--url" if url.is_some() => return Err("--url given more than once".to_owned()),
                "--url" => url = Some(value()?),
                "--workers" => options.workers = parse_count(&flag, &value()?)?,
                "--queue" => options.queue = parse_count(&flag, &value()?)?,
                "--timeout" => options.timeout = parse_seconds(&flag, &value()?)?,
                "--retry" => options.retry = Some(parse_count(&flag, &value()?)?),
                "--header" => options.headers.push(parse_header(&value()?)?),
                "--content-type" => options.content_type = Some(value()?),
                "--batch" => options.batch = Some(parse_batch(&value()?)?),
                "--cacert" => options.cacerts.push(PathBuf::from(value()?)),
                _ if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
                _ => return Err(format!("unexpected argument {flag:?}")),
            }
        }
        options.url = url.ok_or("--url is required")?;
        if !options.cacerts.is_empty() {
            options.tls = Some(tls::client_config(&options.cacerts)?);
        }
        Ok(Some(options))
    }

    /// The client these options describe, not started. Failures are
    /// printed by its error handler; `tty` says whether a progress line
    /// has to be cleared first.
    pub(crate) fn build_client(&self, tty: bool) -> Result<Client, BuildError> {
        let mut builder = Client::builder(&self.url)
            .workers(self.workers)
            .queue_size(self.queue)
            .timeout(self.timeout)
            .error_handler(move |error| report_failure(&error, tty));
        if let Some(content_type) = &self.content_type {
            builder = builder.content_type(content_type);
        }
        if let Some(batch) = &self.batch {
            builder = builder.batch(batch.clone());
        }
        if self.gzip {
            builder = builder.compression(Compression::Gzip);
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(attempts) = self.retry {
            builder = builder.retry(RetryConfig::default().max_attempts(attempts));
        }
        builder.build()
    }
}

/// Parses a batch framing's name.
fn parse_batch(text: &str) -> Result<BatchConfig, String> {
    match text {
        "ndjson" => Ok(BatchConfig::ndjson()),
        "json-array" => Ok(BatchConfig::json_array()),
        "concat" => Ok(BatchConfig::concatenated()),
        _ => Err(format!(
            "--batch {text:?}: expected ndjson, json-array or concat"
        )),
    }
}

/// Parses a whole number of at least 1, allowing `_` separators.
fn parse_count<T>(flag: &str, text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    let number: T = text
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number"))?;
    if number < T::from(1) {
        return Err(format!("{flag}: must be at least 1, got {text:?}"));
    }
    Ok(number)
}

/// Parses a positive number of seconds, fractions allowed.
fn parse_seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            format!("{flag}: {text:?} is not a number of seconds above 0 (e.g. 5 or 0.5)")
        })
}

/// Splits `Name: value` at its first colon; spaces and tabs around the value
/// are dropped. The client checks the name and value when it is built.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()))
        }
        _ => Err(format!("--header {text:?}: expected 'Name: value'")),
    }
}
