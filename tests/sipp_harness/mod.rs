//! The SIPp black-box harness shared by `tests/sipp*.rs`: per-test port blocks, the
//! `switchboard serve` process with three extensions, SIPp runs, RTP peers and helpers.
//! Tests include it with `mod sipp_harness;` (items a test file does not use are allowed
//! to be dead there).
#![allow(dead_code)]

pub mod capture;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sipp-scenarios");
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The server binary: `SWITCHBOARD_TEST_BIN` if set, else cargo's. (With a target directory
/// shared by several checkouts, the uplifted `target/debug/switchboard` may be another
/// checkout's build; point this at `target/debug/deps/switchboard-<hash>` to pin yours.)
pub fn server_bin() -> PathBuf {
    std::env::var_os("SWITCHBOARD_TEST_BIN").map_or_else(|| SERVER_BIN.into(), PathBuf::from)
}

/// Extensions every test server knows; the password of EXT is `pw-EXT`.
pub const CALLER: &str = "1001";
pub const CALLEE: &str = "2001";
pub const UNREGISTERED: &str = "3001";
pub const UNKNOWN: &str = "9999";

/// Ports per test: the server's SIP and HTTP ports, SIPp's SIP and media ports, the server's RTP
/// range. Blocks start below the kernel's ephemeral range (32768+).
pub const BLOCK_SIZE: u16 = 200;
pub const FIRST_BLOCK_PORT: u16 = 20_000;
pub const BLOCKS: u16 = 60;
pub const SIP: u16 = 0;
pub const HTTP: u16 = 1;
pub const CALLEE_SIP: u16 = 10;
pub const CALLEE_MEDIA: u16 = 12; // SIPp also binds media+2
pub const CALLER_SIP: u16 = 20;
pub const CALLER_MEDIA: u16 = 22;
pub const OTHER_SIP: u16 = 30;
pub const OTHER_MEDIA: u16 = 32;
pub const PEER_NG: u16 = 80;
/// 50 even/odd pairs: 25 bridged calls (two legs each) at once.
pub const RTP_LOW: u16 = 100;
pub const RTP_HIGH: u16 = 199;

/// How long anything may take before the test gives up on it.
pub const READY_TRIES: u32 = 150;
pub const POLL: Duration = Duration::from_millis(100);
pub const SIPP_DEADLINE: Duration = Duration::from_secs(45);

/// RTP stream the test plays as the caller.
pub const PACKETS: u16 = 100;
pub const MIN_RELAYED: usize = 80;
pub const PTIME: Duration = Duration::from_millis(20);

pub static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// Ports given to one test.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub base: u16,
}

impl Ports {
    /// Take the next block whose ports are all free right now.
    pub fn allocate() -> Ports {
        let offset = (std::process::id() % u32::from(BLOCKS)) as u16;
        for _ in 0..BLOCKS {
            let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
            let base = FIRST_BLOCK_PORT + ((n + offset) % BLOCKS) * BLOCK_SIZE;
            let ports = Ports { base };
            if ports.all_free() {
                return ports;
            }
        }
        panic!("no free block of {BLOCK_SIZE} loopback ports in {FIRST_BLOCK_PORT}..");
    }

    pub fn port(self, offset: u16) -> u16 {
        self.base + offset
    }

    pub fn rtp_range(self) -> (u16, u16) {
        (self.port(RTP_LOW), self.port(RTP_HIGH))
    }

    pub fn all_free(self) -> bool {
        let tcp = [SIP, HTTP, CALLEE_SIP, CALLER_SIP, OTHER_SIP];
        let udp = [
            SIP,
            CALLEE_SIP,
            CALLEE_MEDIA,
            CALLEE_MEDIA + 2,
            CALLER_SIP,
            CALLER_MEDIA,
            CALLER_MEDIA + 2,
            OTHER_SIP,
            OTHER_MEDIA,
            OTHER_MEDIA + 2,
            PEER_NG,
        ]
        .into_iter()
        .chain(RTP_LOW..=RTP_HIGH);
        tcp.iter()
            .all(|&o| TcpListener::bind(("127.0.0.1", self.port(o))).is_ok())
            && udp
                .into_iter()
                .all(|o| UdpSocket::bind(("127.0.0.1", self.port(o))).is_ok())
    }
}

/// What runs on the server side of the tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    Switchboard,
    /// Kamailio + rtpengine stand-in, to validate scenarios and harness (`SIPP_TEST_PEER=kamailio`).
    KamailioPeer,
}

/// The server under test, killed on drop.
pub struct Server {
    pub target: Target,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub children: Vec<(&'static str, Child)>,
    /// Extra `switchboard serve` arguments, kept for [`Server::restart`].
    pub extra: Vec<String>,
    /// One SIPp test at a time: each runs a server and two SIPp processes, and on 2 cores
    /// parallel runs starve each other's timers. Dropped last, after the processes are killed.
    pub _serial: std::sync::MutexGuard<'static, ()>,
}

pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Server {
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    pub fn sip_port(&self) -> u16 {
        self.ports.port(SIP)
    }

    pub fn start(ports: Ports, target: Target) -> Server {
        Server::start_with(ports, target, &[])
    }

    /// Starts the server with extra `switchboard serve` arguments (e.g. `--record-calls`).
    pub fn start_with(ports: Ports, target: Target, extra: &[&str]) -> Server {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Server {
            target,
            ports,
            dir,
            children: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _serial: serial,
        };
        match target {
            Target::Switchboard => server.start_switchboard(),
            Target::KamailioPeer => server.start_kamailio_peer(),
        }
        server
    }

    /// The server's data directory (database, recordings).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn start_switchboard(&mut self) {
        let data_dir = self.data_dir();
        fs::create_dir_all(&data_dir).expect("data dir");
        for ext in [CALLER, CALLEE, UNREGISTERED] {
            let out = Command::new(server_bin())
                .args(["user", "add", ext, "--password", &format!("pw-{ext}")])
                .arg("--name")
                .arg(format!("Extension {ext}"))
                .arg("--data-dir")
                .arg(&data_dir)
                .output()
                .expect("run switchboard user add");
            assert!(
                out.status.success(),
                "switchboard user add {ext} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.serve();
    }

    /// Runs `switchboard serve` on the data directory and ports and waits until it is ready.
    pub fn serve(&mut self) {
        let data_dir = self.data_dir();
        let sip = format!("127.0.0.1:{}", self.sip_port());
        let (low, high) = self.ports.rtp_range();
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--sip-listen", &format!("udp:{sip}")])
            .args(["--sip-listen", &format!("tcp:{sip}")])
            .args([
                "--http-listen",
                &format!("127.0.0.1:{}", self.ports.port(HTTP)),
            ])
            .args(["--rtp-ports", &format!("{low}-{high}")])
            .args(["--public-ip", "127.0.0.1"])
            .args(["--no-answer-timeout", "30"])
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        self.spawn("switchboard", cmd);
        for _ in 0..READY_TRIES {
            self.assert_running();
            let healthy =
                http_get(self.ports.port(HTTP), "/healthz").is_some_and(|(s, _)| s == 200);
            if healthy && udp_port_bound(self.sip_port()) {
                return;
            }
            thread::sleep(POLL);
        }
        panic!(
            "switchboard not ready (GET /healthz = 200 and SIP UDP bound) after {READY_TRIES} tries\n{}",
            self.logs()
        );
    }

    pub fn start_kamailio_peer(&mut self) {
        let ng = self.ports.port(PEER_NG);
        let (low, high) = self.ports.rtp_range();
        let mut rtpengine = Command::new("rtpengine");
        rtpengine.args([
            "-f",
            "--config-file=none",
            "--table=-1",
            "--interface=127.0.0.1",
            &format!("--listen-ng=127.0.0.1:{ng}"),
            &format!("--port-min={low}"),
            &format!("--port-max={high}"),
        ]);
        self.spawn("rtpengine", rtpengine);
        self.wait_bound(ng);
        let sip = format!("127.0.0.1:{}", self.sip_port());
        let mut kamailio = Command::new("kamailio");
        kamailio
            .arg("-f")
            .arg(Path::new(SCENARIOS).join("peer/kamailio-peer.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .args(["-l", &format!("udp:{sip}"), "-l", &format!("tcp:{sip}")])
            .args(["-A", &format!("RTPENGINE_SOCK=\"udp:127.0.0.1:{ng}\"")]);
        self.spawn("kamailio", kamailio);
        self.wait_bound(self.sip_port());
    }

    pub fn spawn(&mut self, name: &'static str, mut cmd: Command) {
        // Appended: a restarted process continues the log of the one before.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("server log file");
        let err = log.try_clone().expect("server log file");
        // Own process group, so that the whole tree (Kamailio forks) is ended on drop.
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name, child));
    }

    pub fn wait_bound(&mut self, port: u16) {
        for _ in 0..READY_TRIES {
            self.assert_running();
            if udp_port_bound(port) {
                return;
            }
            thread::sleep(POLL);
        }
        panic!("UDP port {port} never bound\n{}", self.logs());
    }

    pub fn assert_running(&mut self) {
        let mut exited = None;
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some((*name, status));
            }
        }
        if let Some((name, status)) = exited {
            panic!("{name} exited early ({status})\n{}", self.logs());
        }
    }

    /// Sends SIGKILL to `switchboard serve` (no chance to clean up, like a crash or an OOM kill)
    /// and reaps it. Returns the Unix time in ms just before the signal.
    pub fn kill_server(&mut self) -> i64 {
        let i = self
            .children
            .iter()
            .position(|(name, _)| *name == "switchboard")
            .expect("switchboard is running");
        let (_, mut child) = self.children.remove(i);
        let at = unix_ms();
        // `Child::kill` is SIGKILL on Unix.
        child.kill().expect("SIGKILL switchboard");
        let status = child.wait().expect("reap switchboard");
        assert!(!status.success(), "switchboard exited normally: {status}");
        at
    }

    /// Starts `switchboard serve` again on the same data directory, ports and arguments (after
    /// [`Server::kill_server`]) and waits until it is ready.
    pub fn restart(&mut self) {
        assert_eq!(
            self.target,
            Target::Switchboard,
            "only switchboard restarts"
        );
        self.serve();
    }

    /// The tails of the server's logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            out += &format!(
                "--- {name} log (tail) ---\n{}\n",
                tail(&self.log_path(name), 80)
            );
        }
        out
    }

    /// Value of a Prometheus gauge or counter with no labels, if the server exports it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        if self.target != Target::Switchboard {
            return None;
        }
        let (status, body) = http_get(self.ports.port(HTTP), "/metrics")?;
        assert_eq!(status, 200, "GET /metrics");
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // The process group created at spawn.
            capture::kill_group(child);
        }
    }
}

/// One SIPp process, killed on drop.
pub struct Sipp {
    pub name: String,
    pub child: Option<Child>,
    pub files: Vec<PathBuf>,
}

/// Builder for a SIPp run against the server.
pub struct SippRun<'a> {
    pub server: &'a Server,
    pub name: String,
    pub args: Vec<String>,
    /// Working directory (where `rtp_stream` files are found); the server's directory if None.
    pub cwd: Option<PathBuf>,
}

impl<'a> SippRun<'a> {
    /// `scenario` is a file of `sipp-scenarios/` without `.xml`; `port`/`media` are block offsets.
    pub fn new(server: &'a Server, name: &str, scenario: &str, port: u16, media: u16) -> Self {
        let args = vec![
            format!("127.0.0.1:{}", server.sip_port()),
            "-sf".into(),
            format!("{SCENARIOS}/{scenario}.xml"),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            server.ports.port(port).to_string(),
            "-mp".into(),
            server.ports.port(media).to_string(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            "-timeout".into(),
            "20s".into(),
            "-timeout_error".into(),
            "-aa".into(),
        ];
        SippRun {
            server,
            name: name.into(),
            args,
            cwd: None,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Runs SIPp in `dir` (relative `rtp_stream` files are opened there).
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Authenticate as `ext` with its right password; `caller` keyword for From/Contact.
    pub fn authenticated_as(self, ext: &str) -> Self {
        self.args([
            "-au",
            ext,
            "-ap",
            &format!("pw-{ext}"),
            "-key",
            "caller",
            ext,
        ])
    }

    pub fn spawn(self) -> Sipp {
        let dir = self.server.dir.path();
        let file = |kind: &str| dir.join(format!("sipp-{}-{kind}.log", self.name));
        let (errors, messages, logs, screen) = (
            file("errors"),
            file("messages"),
            file("logs"),
            file("screen"),
        );
        let stdout = File::create(&screen).expect("sipp screen file");
        let child = Command::new("sipp")
            .args(&self.args)
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&messages)
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(&logs)
            .current_dir(self.cwd.as_deref().unwrap_or(dir))
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("sipp screen file"))
            .stderr(stdout)
            .spawn()
            .expect("start sipp");
        Sipp {
            name: self.name,
            child: Some(child),
            files: vec![errors, messages, logs, screen],
        }
    }

    /// Run to completion and assert exit code 0 (all calls succeeded).
    pub fn succeeds(self) {
        let server = self.server;
        self.spawn().succeeded(server);
    }
}

impl Sipp {
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait (bounded) for SIPp to exit, then assert that every call succeeded.
    pub fn succeeded(&mut self, server: &Server) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if started.elapsed() > SIPP_DEADLINE {
                break None;
            }
            thread::sleep(POLL);
        };
        let ok = status.is_some_and(|s| s.success());
        if !ok {
            let mut report = format!(
                "SIPp '{}' {}\n",
                self.name,
                match status {
                    Some(s) => format!("exited with {s} (0 = all calls succeeded)"),
                    None => format!("still running after {SIPP_DEADLINE:?}"),
                }
            );
            for f in &self.files {
                report += &format!("--- {} ---\n{}\n", f.display(), tail(f, 120));
            }
            report += &server.logs();
            panic!("{report}");
        }
        self.child = None;
    }

    /// Wait until the SIPp process has bound its SIP UDP port, so requests to it are not lost.
    pub fn wait_listening(&mut self, port: u16, server: &Server) {
        for _ in 0..READY_TRIES {
            if let Some(status) = self.exited() {
                panic!(
                    "SIPp '{}' exited early ({status})\n{}",
                    self.name,
                    tail(&self.files[3], 60)
                );
            }
            if udp_port_bound(port) {
                return;
            }
            thread::sleep(POLL);
        }
        panic!("SIPp '{}' never bound {port}\n{}", self.name, server.logs());
    }
}

impl Sipp {
    /// SIGKILL (SIPp with calls in progress does not stop on SIGTERM) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// None when the test must be skipped (printed); panics when SIPp is required (CI).
pub fn setup() -> Option<Server> {
    setup_with(&[])
}

/// [`setup`] with extra `switchboard serve` arguments.
pub fn setup_with(extra: &[&str]) -> Option<Server> {
    let target = match std::env::var("SIPP_TEST_PEER").as_deref() {
        Ok("kamailio") => Target::KamailioPeer,
        _ => Target::Switchboard,
    };
    let mut needed = vec!["sipp"];
    if target == Target::KamailioPeer {
        needed.extend(["kamailio", "rtpengine"]);
    }
    let missing: Vec<_> = needed.into_iter().filter(|p| !on_path(p)).collect();
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "CI is set but {missing:?} not on PATH: run scripts/install-test-deps"
        );
        eprintln!(
            "NOTICE: skipping SIPp test, {missing:?} not on PATH (scripts/install-test-deps installs it)"
        );
        return None;
    }
    Some(Server::start_with(Ports::allocate(), target, extra))
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether some socket is bound to 127.0.0.1:port or 0.0.0.0:port (UDP, IPv4).
pub fn udp_port_bound(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|line| {
        line.split_whitespace()
            .nth(1)
            .is_some_and(|local| wanted.iter().any(|w| w == local))
    })
}

/// Minimal HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// Now, Unix time in ms.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `c=`/`m=` pair a scenario wrote for us (`LABEL [c=IN IP4 A] m=audio P ...`).
#[derive(Debug)]
pub struct SdpSeen {
    pub ip: Option<String>,
    pub port: u16,
}

/// Lines of a media file written by the scenarios' `exec` actions, by label.
pub fn sdp_lines(path: &Path, label: &str) -> Vec<SdpSeen> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.split_whitespace().next() == Some(label))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let ip = words
                .windows(3)
                .find(|w| w[0] == "c=IN" && w[1] == "IP4")
                .map(|w| w[2].to_string());
            let port = words
                .windows(2)
                .find(|w| w[0] == "m=audio")
                .and_then(|w| w[1].parse().ok())?;
            Some(SdpSeen { ip, port })
        })
        .collect()
}

pub fn assert_anchored(server: &Server, what: &str, seen: &SdpSeen, not_port: u16) {
    let (low, high) = server.ports.rtp_range();
    if let Some(ip) = &seen.ip {
        assert_eq!(
            ip, "127.0.0.1",
            "{what}: c= must be the server's --public-ip"
        );
    }
    assert!(
        (low..=high).contains(&seen.port) && seen.port != not_port,
        "{what}: m= port {} is not one of the server's RTP ports {low}-{high} (media not anchored)",
        seen.port
    );
}

/// Poll (bounded) for a labelled line in a scenario's media file while `sipp` runs.
pub fn wait_sdp(path: &Path, label: &str, sipp: &mut Sipp, server: &Server) -> SdpSeen {
    for _ in 0..READY_TRIES {
        if let Some(seen) = sdp_lines(path, label).into_iter().next() {
            return seen;
        }
        if sipp.exited().is_some() {
            break;
        }
        thread::sleep(POLL);
    }
    // Show why: SIPp's own report if it failed.
    sipp.succeeded(server);
    panic!("no '{label}' SDP line in {}", path.display());
}

/// Counters of one side of the test's RTP.
#[derive(Debug, Default)]
pub struct RtpCount {
    pub pcmu: usize,
    pub foreign: Vec<SocketAddr>,
}

/// Receive RTP on `socket` until `stop`; count PCMU packets from the server's RTP ports; if
/// `echo`, send each packet back to where it came from.
pub fn rtp_peer(
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    rtp: (u16, u16),
    echo: bool,
) -> thread::JoinHandle<RtpCount> {
    thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        let mut count = RtpCount::default();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let from_server = from.ip().is_loopback() && (rtp.0..=rtp.1).contains(&from.port());
            if !from_server {
                count.foreign.push(from);
                continue;
            }
            // RTP version 2, payload type 0 (PCMU).
            if n >= 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 0 {
                count.pcmu += 1;
            }
            if echo {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
        count
    })
}

/// 160 bytes (20 ms) of a 400 Hz µ-law tone, frame `i`.
pub fn pcmu_frame(i: u16) -> [u8; 160] {
    let mut frame = [0u8; 160];
    for (k, byte) in frame.iter_mut().enumerate() {
        let t = (usize::from(i) * 160 + k) as f64 / 8000.0;
        let sample = (8000.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()) as i16;
        *byte = linear_to_ulaw(sample);
    }
    frame
}

/// G.711 µ-law encoder (ITU-T G.711 §3.2), enough to make a recognisable tone.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Play 100 PCMU packets from `socket` to `to`, paced at ptime.
pub fn play_rtp(socket: &UdpSocket, to: SocketAddr) {
    let ssrc: u32 = 0x5b0a_11ed;
    let start = Instant::now();
    for i in 0..PACKETS {
        let mut packet = Vec::with_capacity(172);
        packet.extend_from_slice(&[0x80, if i == 0 { 0x80 } else { 0x00 }]);
        packet.extend_from_slice(&(1000 + i).to_be_bytes());
        packet.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&pcmu_frame(i));
        socket.send_to(&packet, to).expect("send RTP");
        // Pacing of the stream (real time), not synchronisation.
        let next = PTIME * u32::from(i + 1);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
}

/// Registers `CALLEE` from the port its UAS scenario will listen on.
pub fn register_callee(server: &Server) {
    SippRun::new(
        server,
        "register-callee",
        "register_ok",
        CALLEE_SIP,
        CALLEE_MEDIA,
    )
    .args(["-s", CALLEE])
    .authenticated_as(CALLEE)
    .succeeds();
}

/// Starts the callee's UAS scenario on the registered port and waits until it listens.
pub fn start_callee(server: &Server, scenario: &str, extra: &[String]) -> Sipp {
    let mut callee = SippRun::new(server, "callee", scenario, CALLEE_SIP, CALLEE_MEDIA)
        .args(["-s", CALLEE])
        .args(extra.iter().cloned())
        .spawn();
    callee.wait_listening(server.ports.port(CALLEE_SIP), server);
    callee
}

/// A connection to the server's SQLite database, on a runtime of its own (test files add the
/// queries they need in their own `impl Db`).
pub struct Db {
    pub rt: tokio::runtime::Runtime,
    pub conn: sqlx::sqlite::SqliteConnection,
}

impl Db {
    pub fn open(server: &Server) -> Db {
        use sqlx::ConnectOptions;
        let path = server.data_dir().join("switchboard.db");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(5));
        let conn = rt
            .block_on(options.connect())
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Db { rt, conn }
    }
}

/// An API key made with the CLI on the server's data directory, as an operator would: the key
/// alone on stdout.
pub fn api_key(server: &Server, name: &str, scope: &str) -> String {
    let out = Command::new(server_bin())
        .args(["apikey", "create", "--name", name, "--scope", scope])
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("run switchboard apikey create");
    assert!(
        out.status.success(),
        "switchboard apikey create failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("the key is UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key alone on stdout: {stdout:?}");
    assert!(lines[0].starts_with("sb_"), "a key: {stdout:?}");
    lines[0].to_owned()
}
