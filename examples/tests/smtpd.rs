//! The smtpd binary on every driver, against clients nobody here wrote: Python's `smtplib` and
//! `swaks`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require, Served, DRIVERS};

fn maildir(test: &str, driver: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "asynchat-smtpd-{test}-{driver}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Runs a Python script with the server's port as its argument; returns its stdout.
fn python(script: &str, port: u16) -> String {
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SMTPLIB_SESSION: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
body = "Subject: hello\r\n\r\nfirst line\r\n.starts with a dot\r\n.\r\n..two dots\r\nend\r\n"
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    code, _ = s.ehlo("tester")
    assert code == 250 and s.has_extn("size") and s.has_extn("8bitmime"), s.esmtp_features
    refused = s.sendmail("from@example.com", ["a@example.com", "b@example.org"], body)
    assert refused == {}, refused
    # A second message on the same session, then an over-size one refused by its SIZE.
    s.sendmail("from@example.com", ["c@example.com"], "Subject: two\r\n\r\nbody\r\n")
    try:
        s.sendmail("from@example.com", ["a@example.com"], "x" * 5000 + "\r\n")
        print("over-size accepted")
    except smtplib.SMTPSenderRefused as e:
        print("refused", e.smtp_code)
    assert s.noop()[0] == 250
print("ok")
"#;

#[test]
fn smtplib_delivers_multi_recipient_dot_stuffed_mail_on_every_driver() {
    require("python3", "apt-get install -y python3");
    for driver in DRIVERS {
        let dir = maildir("smtplib", driver);
        let served = Served::start(
            env!("CARGO_BIN_EXE_smtpd"),
            driver,
            &["--maildir", dir.to_str().unwrap(), "--max-size", "4096"],
        );
        let out = python(SMTPLIB_SESSION, served.addr.port());
        assert_eq!(out, "refused 552\nok\n", "{driver}");
        let mail = messages(&dir);
        assert_eq!(mail.len(), 2, "{driver}: {mail:?}");
        let first = mail.iter().find(|m| m.contains("hello")).unwrap();
        assert!(
            first.contains("X-Rcpt-To: <a@example.com>, <b@example.org>\r\n"),
            "{first}"
        );
        assert!(
            first.ends_with(
                "Subject: hello\r\n\r\nfirst line\r\n.starts with a dot\r\n.\r\n..two dots\r\nend\r\n"
            ),
            "{driver}: dot-unstuffing gave back the message as sent: {first:?}"
        );
        drop(served);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn swaks_delivers_and_an_over_size_message_gets_552_on_every_driver() {
    require("swaks", "apt-get install -y swaks");
    for driver in DRIVERS {
        let dir = maildir("swaks", driver);
        let served = Served::start(
            env!("CARGO_BIN_EXE_smtpd"),
            driver,
            &["--maildir", dir.to_str().unwrap(), "--max-size", "20000"],
        );
        let server = served.addr.to_string();
        let swaks = |body: &str| {
            Command::new("swaks")
                .args([
                    "--server",
                    &server,
                    "--timeout",
                    "10",
                    "--helo",
                    "swaks.test",
                ])
                .args([
                    "--from",
                    "s@example.com",
                    "--to",
                    "x@example.com,y@example.com",
                ])
                .args(["--header", "Subject: via swaks", "--body", body])
                .output()
                .expect("run swaks")
        };
        let ok = swaks("line one\n.dotted line\nline three");
        let transcript = String::from_utf8_lossy(&ok.stdout);
        assert!(ok.status.success(), "{driver}: {transcript}");
        assert!(transcript.contains("250 OK: queued as"), "{transcript}");

        let big = "y".repeat(70) + "\n";
        let over = swaks(&big.repeat(400));
        let transcript = String::from_utf8_lossy(&over.stdout);
        assert!(
            !over.status.success(),
            "{driver}: over-size accepted: {transcript}"
        );
        assert!(
            transcript.contains("552 Error: Too much mail data"),
            "{transcript}"
        );

        let mail = messages(&dir);
        assert_eq!(mail.len(), 1, "{driver}");
        assert!(mail[0].contains("X-Rcpt-To: <x@example.com>, <y@example.com>\r\n"));
        assert!(mail[0].contains("Subject: via swaks\r\n"));
        assert!(
            mail[0].contains("\r\nline one\r\n.dotted line\r\nline three\r\n"),
            "{driver}: {:?}",
            mail[0]
        );
        drop(served);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
