//! A real SMTP server for tests (feature `test-support`): a small sink on a free loopback port
//! that speaks the protocol over TCP and hands every message it accepts to the test. The alerts
//! crate's own tests and the `scalesense up` end-to-end test both deliver to it.
//!
//! It exists only for tests: it accepts every sender and recipient, keeps nothing on disk and
//! must never be started by the server.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One message an SMTP client delivered.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub rcpt: Vec<String>,
    /// The DATA section, lines joined with `\n`, dot-stuffing undone.
    pub data: String,
}

impl Mail {
    /// A header's value, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\n\n").next()?;
        let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The multipart boundary of the message.
    fn boundary(&self) -> Option<String> {
        let content_type = self.header("Content-Type")?;
        let start = content_type.find("boundary=")? + "boundary=".len();
        Some(
            content_type[start..]
                .trim_matches('"')
                .split('"')
                .next()?
                .to_owned(),
        )
    }

    /// The decoded body of the first MIME part of `content_type`.
    pub fn part(&self, content_type: &str) -> Option<String> {
        let start = self.data.find(&format!("Content-Type: {content_type}"))?;
        let rest = &self.data[start..];
        let headers_end = rest.find("\n\n")?;
        let headers = &rest[..headers_end];
        let body = &rest[headers_end + 2..];
        let boundary = self.boundary()?;
        let body = &body[..body.find(&format!("\n--{boundary}")).unwrap_or(body.len())];
        if headers.contains("quoted-printable") {
            decode_qp(body)
        } else {
            Some(body.to_owned())
        }
    }
}

/// Undoes quoted-printable; `None` when the text is not valid quoted-printable UTF-8.
fn decode_qp(s: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let raw = s.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'=' if raw.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

fn angle(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.find('>').unwrap_or(arg.len());
    arg[start..end].to_owned()
}

/// Starts a real SMTP server on a free loopback port: it answers EHLO/HELO, MAIL, RCPT, DATA,
/// RSET, NOOP and QUIT like a relay that accepts everything, and hands every message over.
/// Returns the port and the messages, in the order they arrived.
pub async fn smtp_sink() -> std::io::Result<(u16, mpsc::UnboundedReceiver<Mail>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(stream, tx.clone()));
        }
    });
    Ok((port, rx))
}

/// One SMTP conversation; ends at QUIT or when the client goes away.
async fn session(stream: TcpStream, tx: mpsc::UnboundedSender<Mail>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write
        .write_all(b"220 sink.test ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut from = String::new();
    let mut rcpt = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end_matches('\r').to_owned();
        let verb = line.to_ascii_uppercase();
        let reply: &[u8] = if verb.starts_with("EHLO") {
            b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if verb.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if verb.starts_with("MAIL FROM:") {
            from = angle(&line);
            b"250 2.1.0 OK\r\n"
        } else if verb.starts_with("RCPT TO:") {
            rcpt.push(angle(&line));
            b"250 2.1.5 OK\r\n"
        } else if verb == "DATA" {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                let l = l.trim_end_matches('\r');
                if l == "." {
                    break;
                }
                data.push(
                    l.strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(l)
                        .to_owned(),
                );
            }
            let _ = tx.send(Mail {
                from: std::mem::take(&mut from),
                rcpt: std::mem::take(&mut rcpt),
                data: data.join("\n"),
            });
            b"250 2.0.0 queued\r\n"
        } else if verb == "QUIT" {
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"250 2.0.0 OK\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Waits for the next message, at most `secs`; panics naming what did not happen.
pub async fn next_mail(rx: &mut mpsc::UnboundedReceiver<Mail>, secs: u64) -> Mail {
    match tokio::time::timeout(Duration::from_secs(secs), rx.recv()).await {
        Ok(Some(mail)) => mail,
        Ok(None) => panic!("the SMTP sink stopped"),
        Err(elapsed) => panic!("no e-mail arrived within {secs} s: {elapsed}"),
    }
}
