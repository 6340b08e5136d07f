//! Loopback capture with tshark and a classic-pcap reader, for the SIPp tests that check what a
//! party received; and the CI-aware tool checks those tests share.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

use super::{POLL, READY_TRIES, on_path, tail};

/// True when `CI` is set to something other than empty, `false` or `0`.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// True when every tool is on PATH; otherwise a notice (a failure under CI).
pub fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ci(),
        "CI is set but {missing:?} not on PATH: run scripts/install-test-deps"
    );
    eprintln!("NOTICE: skipping, {missing:?} not on PATH (scripts/install-test-deps installs it)");
    false
}

/// One UDP datagram seen on loopback.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Capture time, seconds.
    pub time: f64,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// tshark writing a classic pcap of `lo` through a capture filter; killed on drop.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts capturing `filter` (a BPF expression, e.g. `udp port 4000`) into
    /// `dir/<name>.pcap` and waits (bounded) until tshark reports it is capturing. None when
    /// capturing is impossible here (a notice; a failure under CI).
    pub fn start(dir: &Path, name: &str, filter: &str) -> Option<Capture> {
        let skip = |why: String| {
            assert!(!ci(), "CI is set but loopback cannot be captured: {why}");
            eprintln!("NOTICE: not checking what the parties received: {why}");
            None
        };
        if !on_path("tshark") {
            return skip("tshark not on PATH (scripts/install-test-deps installs it)".into());
        }
        let file = dir.join(format!("{name}.pcap"));
        let log = dir.join(format!("{name}-tshark.log"));
        let out = File::create(&log).expect("tshark log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-n", "-q", "-F", "pcap", "-f", filter])
            // A bound on its own life, should the test die without stopping it.
            .args(["-a", "duration:120", "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("tshark log"))
            .stderr(out)
            // Its own group: tshark and its dumpcap get the stop signal together.
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return skip(format!("cannot start tshark: {e}")),
        };
        let mut capture = Capture {
            child: Some(child),
            file,
            log,
        };
        for _ in 0..READY_TRIES {
            let text = fs::read_to_string(&capture.log).unwrap_or_default();
            if text.contains("Capturing on") {
                return Some(capture);
            }
            if let Some(child) = capture.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                capture.child = None;
                return skip(format!("tshark exited ({status}): {}", text.trim()));
            }
            thread::sleep(POLL);
        }
        skip(format!(
            "tshark did not start capturing: {}",
            tail(&capture.log, 10)
        ))
    }

    /// Stops tshark (SIGINT, so it finishes the file) and returns what it captured.
    pub fn stop(mut self) -> Vec<Datagram> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", "--", &format!("-{}", child.id())])
                .status();
            let mut exited = false;
            for _ in 0..READY_TRIES {
                if child.try_wait().ok().flatten().is_some() {
                    exited = true;
                    break;
                }
                thread::sleep(POLL);
            }
            if !exited {
                kill_group(&mut child);
            }
        }
        let bytes = fs::read(&self.file).unwrap_or_else(|e| {
            panic!(
                "no capture file {}: {e}\n{}",
                self.file.display(),
                tail(&self.log, 20)
            )
        });
        read_pcap(&bytes).unwrap_or_else(|e| panic!("unreadable capture: {e}"))
    }
}

/// SIGKILL to a process group started with `process_group(0)`, then reaps the leader.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// The UDP/IPv4 datagrams of a classic pcap file (either byte order, µs or ns timestamps;
/// link types Ethernet, BSD loopback, raw IP, Linux cooked v1/v2). A truncated last record
/// (capture killed) ends the list.
pub fn read_pcap(bytes: &[u8]) -> Result<Vec<Datagram>, String> {
    if bytes.len() < 24 {
        return Err(format!("{} bytes is no pcap file", bytes.len()));
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (little, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        _ => {
            return Err(format!(
                "bad pcap magic {magic:#010x} (pcapng? use -F pcap)"
            ));
        }
    };
    let u32_at = |at: usize| -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link = u32_at(20) & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let time =
            f64::from(u32_at(at)) + f64::from(u32_at(at + 4)) / if nanos { 1e9 } else { 1e6 };
        let caplen = u32_at(at + 8) as usize;
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + caplen) else {
            break;
        };
        at = start + caplen;
        if let Some(d) = udp_of_frame(time, link, frame) {
            out.push(d);
        }
    }
    Ok(out)
}

fn udp_of_frame(time: f64, link: u32, frame: &[u8]) -> Option<Datagram> {
    let ip = match link {
        // Ethernet: type at 12.
        1 => (frame.get(12..14)? == [0x08, 0x00]).then(|| &frame[14..])?,
        // BSD loopback: 4-byte address family.
        0 | 108 => frame.get(4..)?,
        // Raw IP.
        101 | 228 => frame,
        // Linux cooked capture v1: protocol at 14; v2: at 0.
        113 => (frame.get(14..16)? == [0x08, 0x00]).then(|| &frame[16..])?,
        276 => (frame.get(0..2)? == [0x08, 0x00]).then(|| &frame[20..])?,
        _ => return None,
    };
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(header..total.min(ip.len()))?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    Some(Datagram {
        time,
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp.get(8..len.min(udp.len()))?.to_vec(),
    })
}
