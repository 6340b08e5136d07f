//! A real softphone against the built `switchboard` binary: Linphone (`linphonec`, Debian
//! `linphone-cli`) with SRTP switched on calls a plain extension.
//!
//! Until the server terminates SRTP, an offer it cannot carry is refused, never answered and
//! relayed blind (issue 11, item 8):
//! * SRTP **mandatory**: Linphone offers only `RTP/SAVP` with `a=crypto`; the server answers
//!   488 with `Warning: 302` and the callee is never rung;
//! * SRTP **optional** (Linphone's "srtp" without mandatory): the same SAVP offer gets 488,
//!   Linphone retries with `RTP/AVP` and the call is answered with our own SDP, without keys.
//!
//! The server, its extensions and the SIPp callee come from `tests/sipp_harness`. Linphone
//! runs with a config file of its own in the test's temporary directory (and `HOME` there, for
//! its database). `auto_net_state_mon=0`, `register_only_when_network_is_up=0` and
//! `ipv6_migration_done=1` + `use_ipv6=0` make it bind its SIP port on IPv4 and register at once
//! in a container without a network monitor. Without `linphonec` on PATH the tests print a
//! notice and pass (`scripts/install-test-deps` installs `linphone-cli`).
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod sipp_harness;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sipp_harness::*;

/// How long Linphone may take for one step (register, get a final response).
const STEP: Duration = Duration::from_secs(15);

/// One `linphonec` process driven through its standard input.
struct Linphone {
    child: Child,
    stdin: ChildStdin,
    log: PathBuf,
}

impl Linphone {
    /// Starts Linphone registered as `ext` at the server, with SRTP mandatory or optional.
    fn start(server: &Server, ext: &str, srtp_mandatory: bool) -> Linphone {
        let dir = server.dir.path().join(format!("linphone-{ext}"));
        fs::create_dir_all(dir.join(".local/share/linphone")).expect("linphone home");
        let rc = dir.join("linphonerc");
        let log = dir.join("linphone.log");
        let config = format!(
            "[sip]\nauto_net_state_mon=0\nipv6_migration_done=1\nuse_ipv6=0\nregister_only_when_network_is_up=0\nsip_port={sip}\nsip_tcp_port=0\n\
             sip_tls_port=0\ndefault_proxy=0\nmedia_encryption=srtp\n\
             media_encryption_mandatory={mandatory}\n\n[rtp]\naudio_rtp_port={rtp}\n\n\
             [video]\nenabled=0\ncapture=0\ndisplay=0\n\n\
             [proxy_0]\nreg_proxy=<sip:127.0.0.1:{server_port};transport=udp>\n\
             reg_identity=sip:{ext}@127.0.0.1\nreg_expires=3600\nreg_sendregister=1\npublish=0\n\n\
             [auth_info_0]\nusername={ext}\nuserid={ext}\npasswd=pw-{ext}\n",
            sip = server.ports.port(OTHER_SIP),
            rtp = server.ports.port(OTHER_MEDIA),
            mandatory = u8::from(srtp_mandatory),
            server_port = server.sip_port(),
        );
        fs::write(&rc, config).expect("write linphonerc");
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&rc)
            .args(["-d", "6", "-l"])
            .arg(&log)
            .env("HOME", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start linphonec");
        let stdin = child.stdin.take().expect("linphonec stdin is piped");
        let linphone = Linphone { child, stdin, log };
        linphone.wait_for("registered", |log| log.contains("[LinphoneRegistrationOk]"));
        linphone
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to linphonec");
    }

    fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// Waits (bounded) until `done` holds for Linphone's log; panics with the log otherwise.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log_text();
            if done(&log) {
                return log;
            }
            assert!(
                start.elapsed() < STEP,
                "linphonec: not {what} within {STEP:?}; SIP seen:\n{}",
                sip_lines(&log)
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Start lines, m= lines, crypto and Warning headers of Linphone's log: enough to see why.
fn sip_lines(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.starts_with("INVITE ")
                || l.starts_with("SIP/2.0 ")
                || l.starts_with("m=")
                || l.starts_with("a=crypto")
                || l.starts_with("Warning:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn linphone_server() -> Option<Server> {
    if !on_path("linphonec") {
        eprintln!("NOTICE: linphonec not on PATH (apt-get install linphone-cli); test skipped");
        return None;
    }
    let server = setup()?;
    if server.target != Target::Switchboard {
        eprintln!("NOTICE: SRTP refusal is switchboard's rule, not the peer's");
        return None;
    }
    Some(server)
}

#[test]
fn linphone_with_srtp_mandatory_gets_488_and_the_callee_is_never_rung() {
    let Some(server) = linphone_server() else {
        return;
    };
    register_callee(&server);
    let mut caller = Linphone::start(&server, CALLER, true);
    caller.command(&format!("call sip:{CALLEE}@127.0.0.1"));
    let log = caller.wait_for("refused", |log| log.contains("SIP/2.0 488"));
    let sip = sip_lines(&log);
    assert!(
        sip.contains("m=audio") && sip.contains("RTP/SAVP") && sip.contains("a=crypto"),
        "Linphone offered SRTP:\n{sip}"
    );
    assert!(
        sip.contains("Warning: 302 switchboard \"SDP offers audio only over RTP/SAVP"),
        "the 488 says why:\n{sip}"
    );
    for never in ["SIP/2.0 180", "SIP/2.0 183"] {
        assert!(!sip.contains(never), "{never} for an SRTP call:\n{sip}");
    }
    assert!(
        !log.contains("to LinphoneCallConnected"),
        "the SRTP call must not connect:\n{sip}"
    );
}

#[test]
fn linphone_with_srtp_optional_falls_back_to_plain_rtp_and_talks() {
    let Some(server) = linphone_server() else {
        return;
    };
    register_callee(&server);
    let callee_rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("callee RTP socket");
    let callee_port = callee_rtp.local_addr().expect("addr").port();
    let media_file = server.dir.path().join("callee-media.txt");
    let mut callee = start_callee(
        &server,
        "uas_answer",
        &[
            "-key".into(),
            "callee_rtp".into(),
            callee_port.to_string(),
            "-set".into(),
            "media_file".into(),
            media_file.display().to_string(),
        ],
    );
    let mut caller = Linphone::start(&server, CALLER, false);
    caller.command(&format!("call sip:{CALLEE}@127.0.0.1"));
    let log = caller.wait_for("connected", |log| {
        log.contains("to LinphoneCallConnected") || log.contains("to LinphoneCallError")
    });
    let sip = sip_lines(&log);
    assert!(
        log.contains("to LinphoneCallConnected"),
        "the call connects after the fallback:\n{sip}"
    );
    assert!(sip.contains("SIP/2.0 488"), "SAVP refused first:\n{sip}");
    assert!(sip.contains("RTP/AVP "), "then plain RTP offered:\n{sip}");
    // The 200 to the INVITE: the message as logged, up to Linphone's next log line.
    let answer = log
        .split("SIP/2.0 200 OK")
        .skip(1)
        .map(|part| {
            part.lines()
                .take_while(|l| !l.starts_with("20"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .find(|message| message.contains("\nm=audio"))
        .expect("a 200 with SDP");
    assert!(answer.contains("o=switchboard "), "our own SDP: {answer}");
    assert!(!answer.contains("crypto"), "no key in the answer: {answer}");
    assert!(
        !answer.contains("rtcp-fb"),
        "no feedback in the answer: {answer}"
    );
    caller.command("terminate");
    callee.succeeded(&server);
}
