//! fcgi-load: a FastCGI load generator that speaks the protocol directly
//! (no web server in between). See bench/README.md.

#![deny(clippy::undocumented_unsafe_blocks)]

mod engine;
mod net;
mod params;
mod wire;

use engine::{Config, Stats, Stop};
use params::ParamSet;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};
use wire::{Response, Template, Verify};

const USAGE: &str = "\
usage: fcgi-load [options] ADDR
  ADDR                 host:port, :port (127.0.0.1), unix:/path or /path
  -c, --connections N  concurrent connections (default 1)
  -t, --threads N      client threads (default 1); see --engine
  -d, --duration SECS  run time (default 3)
  -n, --requests N     a fixed number of requests instead of a duration
      --close          a new connection per request (FCGI_KEEP_CONN off, as
                       nginx by default); default is keep-alive
  -p, --params SET     none, light (25 params) or heavy (50 params); default light
  -b, --body BYTES     POST a body of BYTES (default 0: GET)
  -u, --uri URI        REQUEST_URI (default /hello?name=bench)
      --verify MODE    full (stdout byte for byte against the first
                       response, default), length, or framing
      --echo           the first response's stdout must end with the body
      --expect-len N   the first response's stdout must be N bytes
      --engine E       auto (default), epoll or blocking; auto uses one
                       blocking thread per connection when threads equal
                       connections and the request is at most 64 KiB
      --timeout SECS   per request (default 5)
      --wait SECS      how long to wait for the server to come up (default 5)
      --json           print one JSON object instead of text
      --label TEXT     a label echoed in the report
      --pin-threads    pin client thread i to the i-th allowed CPU (round robin)";

struct Args {
    addr: String,
    connections: usize,
    threads: usize,
    duration: f64,
    requests: Option<u64>,
    keep_alive: bool,
    params: ParamSet,
    body: usize,
    uri: String,
    verify: Verify,
    echo: bool,
    expect_len: Option<usize>,
    engine: String,
    timeout: f64,
    wait: f64,
    json: bool,
    label: String,
    pin_threads: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: String::new(),
        connections: 1,
        threads: 1,
        duration: 3.0,
        requests: None,
        keep_alive: true,
        params: ParamSet::Light,
        body: 0,
        uri: "/hello?name=bench".into(),
        verify: Verify::Full,
        echo: false,
        expect_len: None,
        engine: "auto".into(),
        timeout: 5.0,
        wait: 5.0,
        json: false,
        label: String::new(),
        pin_threads: false,
    };
    let mut it = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(o: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{o} needs a value"))?;
        v.parse().map_err(|_| format!("bad value for {o}: {v}"))
    }
    while let Some(o) = it.next() {
        match o.as_str() {
            "-c" | "--connections" => a.connections = num(&o, it.next())?,
            "-t" | "--threads" => a.threads = num(&o, it.next())?,
            "-d" | "--duration" => a.duration = num(&o, it.next())?,
            "-n" | "--requests" => a.requests = Some(num(&o, it.next())?),
            "--close" => a.keep_alive = false,
            "--keep-alive" => a.keep_alive = true,
            "-p" | "--params" => a.params = ParamSet::parse(&num::<String>(&o, it.next())?)?,
            "-b" | "--body" => a.body = num(&o, it.next())?,
            "-u" | "--uri" => a.uri = num(&o, it.next())?,
            "--verify" => {
                a.verify = match num::<String>(&o, it.next())?.as_str() {
                    "full" => Verify::Full,
                    "length" => Verify::Length,
                    "framing" => Verify::Framing,
                    v => return Err(format!("bad --verify {v}")),
                }
            }
            "--echo" => a.echo = true,
            "--expect-len" => a.expect_len = Some(num(&o, it.next())?),
            "--engine" => a.engine = num(&o, it.next())?,
            "--timeout" => a.timeout = num(&o, it.next())?,
            "--wait" => a.wait = num(&o, it.next())?,
            "--json" => a.json = true,
            "--label" => a.label = num(&o, it.next())?,
            "--pin-threads" => a.pin_threads = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if !a.addr.is_empty() {
                    return Err(format!("unexpected argument {s}"));
                }
                a.addr = s.to_string();
            }
        }
    }
    if a.addr.is_empty() {
        return Err("no address given".into());
    }
    if a.connections == 0 || a.threads == 0 {
        return Err("connections and threads must be at least 1".into());
    }
    a.threads = a.threads.min(a.connections);
    if !["auto", "epoll", "blocking"].contains(&a.engine.as_str()) {
        return Err(format!("bad --engine {}", a.engine));
    }
    Ok(a)
}

/// The request body: a pattern that is not all one byte, so an echo check means something.
fn make_body(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz\n"[i % 37])
        .collect()
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect_std(
    t: &net::Target,
    timeout: Duration,
) -> std::io::Result<(Box<dyn Stream>, Box<dyn Stream>)> {
    match t {
        net::Target::Tcp(a) => {
            let s = std::net::TcpStream::connect(a)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_nodelay(true)?;
            Ok((Box::new(s.try_clone()?), Box::new(s)))
        }
        net::Target::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(Some(timeout))?;
            Ok((Box::new(s.try_clone()?), Box::new(s)))
        }
    }
}

/// Sends one request (id 1) and returns its STDOUT: the reference every
/// later response is compared with. Waits up to `wait` for the server.
fn fetch_reference(
    a: &Args,
    target: &net::Target,
    template: &Template,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let give_up = Instant::now() + Duration::from_secs_f64(a.wait);
    let timeout = Duration::from_secs_f64(a.timeout);
    let (mut rd, mut wr) = loop {
        match connect_std(target, timeout) {
            Ok(s) => break s,
            Err(e) if Instant::now() < give_up => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("cannot connect to {target}: {e}")),
        }
    };
    let mut req = template.bytes.clone();
    template.set_id(&mut req, 1);
    // Written from another thread: an echoing server answers while we send.
    let writer = std::thread::spawn(move || wr.write_all(&req));
    let mut resp = Response::new();
    resp.capture = Some(Vec::new());
    let mut buf = vec![0u8; 256 * 1024];
    let end = loop {
        let n = rd
            .read(&mut buf)
            .map_err(|e| format!("reference request: read: {e}"))?;
        if n == 0 {
            return Err("reference request: connection closed before END_REQUEST".into());
        }
        match resp.feed(&buf[..n], 1, &[], Verify::Framing) {
            Ok(Some(e)) => break e,
            Ok(None) => {}
            Err(p) => return Err(format!("reference request: {p}")),
        }
    };
    writer
        .join()
        .map_err(|_| "writer panicked".to_string())?
        .map_err(|e| format!("reference request: write: {e}"))?;
    if end.protocol_status != 0 || end.app_status != 0 {
        return Err(format!(
            "reference request: END_REQUEST protocolStatus {} appStatus {}",
            end.protocol_status, end.app_status
        ));
    }
    let out = resp.capture.take().unwrap_or_default();
    if a.echo && !out.ends_with(body) {
        return Err(format!(
            "reference request: stdout ({} bytes) does not end with the {}-byte body",
            out.len(),
            body.len()
        ));
    }
    if let Some(n) = a.expect_len {
        if out.len() != n {
            return Err(format!(
                "reference request: stdout is {} bytes, expected {n}",
                out.len()
            ));
        }
    }
    Ok(out)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fcgi-load: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let target = match net::Target::parse(&a.addr) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fcgi-load: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = match net::RawAddr::new(&target) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fcgi-load: {e}");
            return ExitCode::from(2);
        }
    };
    let body = make_body(a.body);
    let plist = params::build(a.params, a.body, &a.uri);
    let template = Template::new(&plist, &body, a.keep_alive);
    let reference = match fetch_reference(&a, &target, &template, &body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fcgi-load: {e}");
            return ExitCode::from(1);
        }
    };
    let blocking = match a.engine.as_str() {
        "blocking" => true,
        "epoll" => false,
        _ => a.threads == a.connections && template.bytes.len() <= 64 * 1024,
    };
    let request_bytes = template.bytes.len();
    let (params_len, param_count) = (template.params_len, template.param_count);
    let cfg = Config {
        addr,
        tcp: target.is_tcp(),
        keep_alive: a.keep_alive,
        timeout: Duration::from_secs_f64(a.timeout),
        verify: a.verify,
        template,
        reference,
    };

    let cpus = net::allowed_cpus();
    let cpu0 = net::cpu_time();
    let t0 = Instant::now();
    let deadline = a
        .requests
        .is_none()
        .then(|| t0 + Duration::from_secs_f64(a.duration));
    let stop = Stop::new(deadline, a.requests);
    let watches: Vec<AtomicI32> = (0..a.connections).map(|_| AtomicI32::new(-1)).collect();
    let mut total = Stats::default();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        if blocking {
            for slot in 0..a.connections {
                let (cfg, stop, w) = (&cfg, &stop, &watches[slot]);
                let cpu = a.pin_threads.then(|| cpus[slot % cpus.len()]);
                handles.push(s.spawn(move || {
                    if let Some(c) = cpu {
                        net::pin_to_cpu(c);
                    }
                    engine::run_blocking(cfg, stop, slot, w)
                }));
            }
        } else {
            let per = a.connections / a.threads;
            let extra = a.connections % a.threads;
            let mut first = 0;
            for t in 0..a.threads {
                let n = per + usize::from(t < extra);
                let (cfg, stop) = (&cfg, &stop);
                let cpu = a.pin_threads.then(|| cpus[t % cpus.len()]);
                handles.push(s.spawn(move || {
                    if let Some(c) = cpu {
                        net::pin_to_cpu(c);
                    }
                    engine::run_epoll(cfg, stop, first, n)
                }));
                first += n;
            }
        }
        // Watchdog for blocking connections that hang at the end of the run.
        if blocking {
            let mut stopped_at: Option<Instant> = None;
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(Duration::from_millis(5));
                if stop.stopped() {
                    let at = *stopped_at.get_or_insert_with(Instant::now);
                    if at.elapsed() > cfg.timeout && !stop.aborting.load(Ordering::SeqCst) {
                        stop.aborting.store(true, Ordering::SeqCst);
                        for w in &watches {
                            let fd = w.load(Ordering::SeqCst);
                            if fd >= 0 {
                                net::shutdown(fd);
                            }
                        }
                    }
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Nobody may have taken the last ticket yet (all blocked).
                    stop.may_start(Instant::now());
                }
            }
        }
        for h in handles {
            total.merge(h.join().expect("worker panicked"));
        }
    });
    let elapsed = t0.elapsed();
    let cpu1 = net::cpu_time();
    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);

    let secs = elapsed.as_secs_f64();
    let mut lat = std::mem::take(&mut total.lat_ns);
    lat.sort_unstable();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
    };
    let rps = total.ok as f64 / secs;
    let mb_in = total.bytes_in as f64 / secs / 1e6;
    let mb_out = total.bytes_out as f64 / secs / 1e6;
    let cpu = (user + sys).as_secs_f64();
    let per_req = |d: Duration| {
        if total.ok == 0 {
            0.0
        } else {
            d.as_secs_f64() * 1e6 / total.ok as f64
        }
    };
    let (p50, p90, p99, p999) = (
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
    );
    let max = lat.last().copied().unwrap_or(0) as f64 / 1000.0;
    let engine_name = if blocking { "blocking" } else { "epoll" };
    let errors = total.errors();

    if a.json {
        println!(
            "{{\"label\":{},\"target\":{},\"connections\":{},\"threads\":{},\"engine\":\"{}\",\
\"keep_alive\":{},\"params\":\"{}\",\"param_count\":{},\"params_bytes\":{},\"body_bytes\":{},\
\"request_bytes\":{},\"reference_stdout_bytes\":{},\"elapsed_s\":{:.4},\"ok\":{},\"errors\":{},\
\"err_connect\":{},\"err_io\":{},\"err_eof\":{},\"err_proto\":{},\"err_status\":{},\"err_content\":{},\
\"err_timeout\":{},\"conns_opened\":{},\"unserved_conns\":{},\"rps\":{:.1},\"mb_in_s\":{:.3},\
\"mb_out_s\":{:.3},\"lat_us\":{{\"mean\":{:.1},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\
\"p999\":{:.1},\"max\":{:.1}}},\"client_cpu_user_s\":{:.3},\"client_cpu_sys_s\":{:.3},\
\"client_cpu_us_per_req\":{:.2},\"client_cpu_util\":{:.3},\"first_error\":{}}}",
            json_str(&a.label),
            json_str(&target.to_string()),
            a.connections,
            if blocking { a.connections } else { a.threads },
            engine_name,
            a.keep_alive,
            a.params.name(),
            param_count,
            params_len,
            a.body,
            request_bytes,
            cfg.reference.len(),
            secs,
            total.ok,
            errors,
            total.err_connect,
            total.err_io,
            total.err_eof,
            total.err_proto,
            total.err_status,
            total.err_content,
            total.err_timeout,
            total.conns_opened,
            total.unserved,
            rps,
            mb_in,
            mb_out,
            mean,
            p50,
            p90,
            p99,
            p999,
            max,
            user.as_secs_f64(),
            sys.as_secs_f64(),
            per_req(user + sys),
            cpu / secs,
            total
                .first_error
                .as_deref()
                .map_or("null".to_string(), json_str),
        );
    } else {
        println!(
            "fcgi-load {}{}: {} connection(s), {}, {} engine ({} thread(s))",
            target,
            if a.label.is_empty() {
                String::new()
            } else {
                format!(" [{}]", a.label)
            },
            a.connections,
            if a.keep_alive {
                "keep-alive"
            } else {
                "new connection per request"
            },
            engine_name,
            if blocking { a.connections } else { a.threads },
        );
        println!(
            "  request:     {} params ({}, {} B), body {} B, {} B on the wire; reference stdout {} B",
            param_count,
            a.params.name(),
            params_len,
            a.body,
            request_bytes,
            cfg.reference.len()
        );
        println!(
            "  requests:    {} ok, {} errors in {:.2} s",
            total.ok, errors, secs
        );
        if errors > 0 {
            println!(
                "  errors:      connect {}, i/o {}, closed early {}, protocol {}, status {}, content {}, timeout {}",
                total.err_connect,
                total.err_io,
                total.err_eof,
                total.err_proto,
                total.err_status,
                total.err_content,
                total.err_timeout
            );
            if let Some(e) = &total.first_error {
                println!("  first error: {e}");
            }
        }
        println!(
            "  throughput:  {:.0} req/s, {:.2} MB/s received, {:.2} MB/s sent",
            rps, mb_in, mb_out
        );
        println!(
            "  latency:     mean {:.1} us, p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1} us",
            mean, p50, p90, p99, p999, max
        );
        println!(
            "  connections: {} opened, {} never served",
            total.conns_opened, total.unserved
        );
        println!(
            "  client cost: {:.2} us CPU per request (user {:.2} + sys {:.2}), {:.0}% of one CPU",
            per_req(user + sys),
            per_req(user),
            per_req(sys),
            cpu / secs * 100.0
        );
    }
    if errors > 0 || total.unserved > 0 || total.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
