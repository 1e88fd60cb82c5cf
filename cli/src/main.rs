//! `fcgi-client`: sends one FastCGI request to an application over TCP or a
//! Unix socket and prints the response, the way libfcgi's `cgi-fcgi` did
//! for debugging an application without a web server.
//!
//! ```text
//! fcgi-client 127.0.0.1:9000 /hello?name=x
//! echo -n 'a=1' | fcgi-client /run/app.sock /form --method POST --data-file -
//! fcgi-client 127.0.0.1:9000 / --env --param HTTP_COOKIE=a=b --repeat 3 --keep-conn
//! ```

#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use fcgi::client::{Client, Request};
use fcgi::protocol::status;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Role {
    Responder,
    Authorizer,
    Filter,
}

#[derive(Parser, Debug)]
#[command(
    name = "fcgi-client",
    version,
    about = "Send a FastCGI request and print the response"
)]
struct Args {
    /// Where the application listens: host:port, [ipv6]:port, or a Unix socket path.
    address: String,
    /// Request URI (sets REQUEST_URI, SCRIPT_NAME and QUERY_STRING).
    #[arg(default_value = "/")]
    uri: String,
    /// HTTP method (REQUEST_METHOD); POST when a body is given, else GET.
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Extra parameter NAME=VALUE (repeatable; overrides the defaults).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Also send every variable of this process's environment as a parameter.
    #[arg(long)]
    env: bool,
    /// Request body (FCGI_STDIN).
    #[arg(short = 'd', long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the request body from a file ('-' for standard input).
    #[arg(long, value_name = "PATH")]
    data_file: Option<String>,
    /// Role of the request.
    #[arg(long, value_enum, default_value = "responder")]
    role: Role,
    /// For --role filter: the file sent as FCGI_DATA.
    #[arg(long, value_name = "PATH")]
    filter_data: Option<String>,
    /// Send the request this many times.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Keep one connection open for all repeats (FCGI_KEEP_CONN).
    #[arg(long)]
    keep_conn: bool,
    /// Print only the body (drop the CGI header block of STDOUT).
    #[arg(long)]
    body_only: bool,
    /// Print a summary line per request to standard error (status, sizes).
    #[arg(short, long)]
    verbose: bool,
    /// Seconds to wait for the application.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn read_source(path: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        buf = std::fs::read(path)?;
    }
    Ok(buf)
}

fn build_request(args: &Args, body: &[u8], data: &[u8]) -> Result<Request, String> {
    let (path, query) = args.uri.split_once('?').unwrap_or((&args.uri, ""));
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into());
    let mut params: Vec<(String, String)> = Vec::new();
    if args.env {
        params.extend(std::env::vars());
    }
    params.extend(
        [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "fcgi-client"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REQUEST_METHOD", method.as_str()),
            ("REQUEST_URI", args.uri.as_str()),
            ("SCRIPT_NAME", path),
            ("QUERY_STRING", query),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string())),
    );
    if !body.is_empty() {
        params.push(("CONTENT_LENGTH".into(), body.len().to_string()));
    }
    if !data.is_empty() {
        params.push(("FCGI_DATA_LENGTH".into(), data.len().to_string()));
    }
    for p in &args.params {
        let (n, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--param {p:?}: expected NAME=VALUE"))?;
        params.retain(|(name, _)| name != n);
        params.push((n.to_string(), v.to_string()));
    }
    let base = match args.role {
        Role::Responder => Request::responder(),
        Role::Authorizer => Request::authorizer(),
        Role::Filter => Request::filter(),
    };
    Ok(base
        .keep_conn(args.keep_conn)
        .params(params)
        .stdin(body.to_vec())
        .data(data.to_vec()))
}

fn run(args: &Args) -> Result<u32, String> {
    let body = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(path)) => read_source(path).map_err(|e| format!("{path}: {e}"))?,
        (None, None) => Vec::new(),
    };
    let data = match &args.filter_data {
        Some(path) => read_source(path).map_err(|e| format!("{path}: {e}"))?,
        None => Vec::new(),
    };
    let request = build_request(args, &body, &data)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let connect = || {
        Client::connect_timeout(&args.address, timeout)
            .and_then(|c| c.with_timeout(timeout))
            .map_err(|e| format!("cannot connect to {}: {e}", args.address))
    };
    let mut client = connect()?;
    let mut last_status = 0;
    let stdout = std::io::stdout();
    for i in 0..args.repeat {
        if i > 0 && !args.keep_conn {
            client = connect()?;
        }
        let resp = client
            .request(&request)
            .map_err(|e| format!("request failed: {e}"))?;
        let out = if args.body_only {
            resp.body()
        } else {
            &resp.stdout[..]
        };
        let mut lock = stdout.lock();
        lock.write_all(out)
            .and_then(|_| lock.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        std::io::stderr().write_all(&resp.stderr).ok();
        if args.verbose {
            eprintln!(
                "fcgi-client: request {} app_status={} protocol_status={} stdout={}B stderr={}B",
                i + 1,
                resp.app_status,
                resp.protocol_status,
                resp.stdout.len(),
                resp.stderr.len()
            );
        }
        if resp.protocol_status != status::REQUEST_COMPLETE {
            return Err(format!(
                "request refused: protocolStatus {}",
                resp.protocol_status
            ));
        }
        last_status = resp.app_status;
    }
    Ok(last_status)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        // Like cgi-fcgi: the application's exit status becomes ours.
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(255)),
        Err(e) => {
            eprintln!("fcgi-client: {e}");
            ExitCode::from(2)
        }
    }
}
