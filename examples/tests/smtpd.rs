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

/// STARTTLS, checked by three clients nobody here wrote, on every driver:
/// smtplib's `starttls()` (certificate verified, STARTTLS gone from EHLO inside TLS, mail
/// delivered), `swaks --tls`, and `openssl s_client -starttls smtp`; then the injection:
/// `STARTTLS\r\nMAIL FROM:<evil@x>\r\n` in one plaintext write must not run MAIL inside TLS.
/// `--require-tls` refuses MAIL in plaintext with 530.
#[test]
fn starttls_with_smtplib_swaks_and_openssl_and_no_injected_command() {
    require("python3", "apt-get install -y python3");
    require("swaks", "apt-get install -y swaks");
    require("openssl", "apt-get install -y openssl");
    for driver in DRIVERS {
        let dir = maildir("starttls", driver);
        let cert = dir.with_extension("pem");
        let served = Served::start(
            env!("CARGO_BIN_EXE_smtpd"),
            driver,
            &[
                "--maildir",
                dir.to_str().unwrap(),
                "--tls-self-signed",
                cert.to_str().unwrap(),
                "--require-tls",
            ],
        );
        let port = served.addr.port();
        let script = format!(
            r#"
import smtplib, socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context(cafile={cert:?})
with smtplib.SMTP("localhost", port, timeout=10) as s:
    s.ehlo("tester")
    assert s.has_extn("starttls"), s.esmtp_features
    code, msg = s.mail("early@example.com")
    assert code == 530, (code, msg)
    s.starttls(context=ctx)
    s.ehlo("tester")
    assert not s.has_extn("starttls"), s.esmtp_features
    assert s.sendmail("from@example.com", ["a@example.com"], "Subject: tls\r\n\r\nsecret\r\n") == {{}}
# The injection: a command pipelined behind STARTTLS in plaintext.
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
f = raw.makefile("rb")
assert f.readline().startswith(b"220")
raw.sendall(b"EHLO x\r\n")
while not f.readline().startswith(b"250 "):
    pass
raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n")
assert f.readline().startswith(b"220"), "STARTTLS refused"
tls = ctx.wrap_socket(raw, server_hostname="localhost")
tf = tls.makefile("rb")
tls.sendall(b"EHLO y\r\n")
first = tf.readline()
assert first.startswith(b"250-"), ("a reply to an injected command came first", first)
while not tf.readline().startswith(b"250 "):
    pass
tls.sendall(b"MAIL FROM:<good@x>\r\n")
reply = tf.readline()
assert reply.startswith(b"250"), ("MAIL refused: the injected one ran", reply)
tls.sendall(b"QUIT\r\n")
print("ok")
"#
        );
        assert_eq!(python(&script, port), "ok\n", "{driver}");
        let mail = messages(&dir);
        assert_eq!(mail.len(), 1, "{driver}");
        assert!(mail[0].contains("secret"), "{}", mail[0]);

        let swaks = Command::new("swaks")
            .args(["--server", &format!("localhost:{port}"), "--timeout", "10"])
            .args([
                "--tls",
                "--tls-verify",
                "--tls-ca-path",
                cert.to_str().unwrap(),
            ])
            .args(["--from", "s@example.com", "--to", "x@example.com"])
            .args(["--header", "Subject: via swaks over tls"])
            .output()
            .expect("run swaks");
        let transcript = String::from_utf8_lossy(&swaks.stdout);
        assert!(swaks.status.success(), "{driver}: {transcript}");
        assert!(transcript.contains("TLS started"), "{transcript}");
        assert_eq!(messages(&dir).len(), 2, "{driver}");

        let mut openssl = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-starttls",
                "smtp",
                "-verify_return_error",
            ])
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(&cert)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run openssl");
        {
            use std::io::Write as _;
            let mut stdin = openssl.stdin.take().unwrap();
            stdin.write_all(b"EHLO openssl\r\nQUIT\r\n").unwrap();
        }
        let out = openssl.wait_with_output().expect("openssl");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("250 HELP") && said.contains("221 Bye"),
            "{driver}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !said.contains("STARTTLS"),
            "not offered again inside TLS: {said}"
        );
        drop(served);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&cert);
    }
}
