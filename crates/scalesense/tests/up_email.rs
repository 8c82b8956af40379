//! `scalesense up` end to end with e-mail (issue 7): the real binary with a real SMTP server
//! (the alerts crate's test sink). A manager's e-mail channel, made through the API, gets a
//! test message on demand; then the simulated fleet drains a keg below 20 % and the low-keg
//! e-mail arrives, naming the tap and its beer. A webhook channel whose receiver is down shows
//! its failure through the API.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Scalesense, free_addr, wait_for};
use scalesense_alerts::test_support::{Mail, next_mail, smtp_sink};
use scalesense_proto::LocationId;
use scalesense_sim::ScalePlan;
use serde_json::{Value, json};

/// Scales in the simulated bar.
const SCALES: u32 = 2;
/// Simulated seconds per real second: a whole closed night (14 h) passes in 14 s.
const SPEED: &str = "3600";
/// How long the fleet may take to drain a keg below the threshold, real time.
const DRAIN_WAIT: Duration = Duration::from_secs(90);
const PASSWORD: &str = "e2e admin password";
const MANAGER_MAIL: &str = "bar-manager@demo.example";

/// A seed whose every keg starts above the 20 % threshold, one of them no higher than 35 %:
/// whatever e-mail about a low keg arrives is about a keg the fleet drained.
fn draining_seed() -> (u64, ScalePlan) {
    let location = LocationId::try_from("loc-001").unwrap();
    (1..500)
        .find_map(|seed| {
            let plans: Vec<ScalePlan> = (0..SCALES)
                .map(|i| ScalePlan::new(seed, i, i + 1, &location).unwrap())
                .collect();
            let all_above = plans.iter().all(|p| p.initial_level > 0.22);
            let lowest = plans
                .into_iter()
                .min_by(|a, b| a.initial_level.total_cmp(&b.initial_level))?;
            (all_above && lowest.initial_level < 0.35).then_some((seed, lowest))
        })
        .unwrap()
}

/// One HTTP/1.1 exchange; the status, the headers (lower-cased names) and the JSON body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Session cookie and CSRF token of a logged-in user.
struct Session {
    cookie: String,
    csrf: String,
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    session: Option<&Session>,
    body: Option<&Value>,
) -> Answer {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if let Some(s) = session {
        request.push_str("Cookie: ");
        request.push_str(&s.cookie);
        request.push_str("\r\nX-CSRF-Token: ");
        request.push_str(&s.csrf);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let text = if chunked {
        unchunk(rest)
    } else {
        rest.to_owned()
    };
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn login(addr: SocketAddr) -> Session {
    let answer = http(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": "admin@demo.local", "password": PASSWORD})),
    );
    assert_eq!(answer.status, 200, "login: {}", answer.body);
    let cookie = answer
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    Session {
        cookie,
        csrf: answer.body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

/// Reads mails until one whose subject contains `needle` (others are returned too).
async fn mail_about(
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Mail>,
    needle: &str,
    within: Duration,
) -> (Mail, Vec<Mail>) {
    let deadline = Instant::now() + within;
    let mut others = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        assert!(
            left > 0,
            "no e-mail with {needle:?} in its subject within {within:?}; got {:?}",
            others
                .iter()
                .map(|m: &Mail| m.header("Subject"))
                .collect::<Vec<_>>()
        );
        let mail = next_mail(inbox, left).await;
        if mail.header("Subject").is_some_and(|s| s.contains(needle)) {
            return (mail, others);
        }
        others.push(mail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_emails_a_test_message_and_a_drained_keg() {
    let (seed, lowest) = draining_seed();
    let (smtp_port, mut inbox) = smtp_sink().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (http_addr, mqtt) = (free_addr(), free_addr());
    let _up = {
        let up = Scalesense::start(
            &[
                "up",
                "--data-dir",
                "data",
                "--http",
                &http_addr.to_string(),
                "--mqtt",
                &mqtt.to_string(),
                "--scales",
                &SCALES.to_string(),
                "--speed",
                SPEED,
                "--seed",
                &seed.to_string(),
                "--admin-password",
                PASSWORD,
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                &smtp_port.to_string(),
                "--smtp-security",
                "plain",
            ],
            dir.path(),
        );
        up.stdout_until("Press Ctrl-C to stop.", Duration::from_mins(1));
        up
    };
    let session = login(http_addr);

    // Alert on the level alone, at once: no grace period, no "hours left" rule.
    let patched = http(
        http_addr,
        "PATCH",
        "/api/v1/locations/loc-001/settings",
        Some(&session),
        Some(&json!({"thresholds": {
            "grace_period_secs": 0, "low_keg_warning_hours": 0, "low_keg_critical_hours": 0
        }})),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);

    let created = http(
        http_addr,
        "POST",
        "/api/v1/channels",
        Some(&session),
        Some(&json!({
            "location_id": "loc-001", "kind": "email", "target": MANAGER_MAIL,
            "alert_types": ["low_keg"]
        })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let channel = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/channels/{channel}").as_str())
    );

    // "Send test": delivered over SMTP before the answer.
    let tested = http(
        http_addr,
        "POST",
        &format!("/api/v1/channels/{channel}/test"),
        Some(&session),
        None,
    );
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.body, json!({"delivered": true}));
    let (test_mail, _) = mail_about(&mut inbox, "Test", Duration::from_secs(10)).await;
    assert_eq!(test_mail.rcpt, [MANAGER_MAIL]);

    // A webhook whose receiver is down: the test answers 502 naming the error, and the
    // delivery log shows it dead with that error.
    let down = free_addr();
    let hook = http(
        http_addr,
        "POST",
        "/api/v1/channels",
        Some(&session),
        Some(
            &json!({"location_id": "loc-001", "kind": "webhook", "target": format!("http://{down}/hook")}),
        ),
    );
    assert_eq!(hook.status, 201, "{}", hook.body);
    assert!(hook.body["secret"].as_str().unwrap().starts_with("whsec_"));
    let hook_id = hook.body["id"].as_str().unwrap().to_owned();
    let failed = http(
        http_addr,
        "POST",
        &format!("/api/v1/channels/{hook_id}/test"),
        Some(&session),
        None,
    );
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(
        failed.header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        failed.body["detail"].as_str().unwrap().contains("webhook"),
        "{}",
        failed.body
    );
    let log = http(
        http_addr,
        "GET",
        &format!("/api/v1/locations/loc-001/notifications?channel={hook_id}"),
        Some(&session),
        None,
    );
    assert_eq!(log.status, 200, "{}", log.body);
    assert_eq!(log.body["items"][0]["state"], "dead", "{}", log.body);
    assert!(log.body["items"][0]["last_error"].as_str().is_some());
    let listed = http(
        http_addr,
        "GET",
        "/api/v1/locations/loc-001/channels",
        Some(&session),
        None,
    );
    assert!(
        !listed.body.to_string().contains("whsec_"),
        "a listing never shows the secret: {}",
        listed.body
    );

    // The fleet drains the lowest keg below 20 %: the e-mail names its tap and beer.
    let (mail, _) = mail_about(&mut inbox, "Low keg", DRAIN_WAIT).await;
    assert_eq!(mail.rcpt, [MANAGER_MAIL]);
    let subject = mail.header("Subject").unwrap();
    let taps = http(
        http_addr,
        "GET",
        "/api/v1/locations/loc-001/taps",
        Some(&session),
        None,
    );
    let tap = taps.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| subject.contains(&format!("{} (", t["name"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("the subject names no tap: {subject}; taps {}", taps.body));
    let beer_id = tap["beer_id"].as_str().unwrap();
    let beer = http(
        http_addr,
        "GET",
        &format!("/api/v1/beers/{}", beer_id.replace('#', "%23")),
        Some(&session),
        None,
    );
    let beer_name = beer.body["name"].as_str().unwrap();
    assert!(subject.contains(beer_name), "{subject} names {beer_name}");
    let text = mail.part("text/plain").unwrap();
    let level: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Level: "))
        .and_then(|l| l.trim_end_matches(" %").trim().parse().ok())
        .unwrap_or_else(|| panic!("no level in {text}"));
    assert!(
        level <= 20.0,
        "fired at {level} % (the keg started at {:.1} %)",
        lowest.initial_level * 100.0
    );

    println!(
        "seed {seed}: the lowest keg started at {:.1} %; e-mail at {level} %: {subject}",
        lowest.initial_level * 100.0
    );

    // The delivery log shows it sent.
    wait_for(
        "the low-keg e-mail marked sent",
        Duration::from_secs(10),
        || async {
            let log = http(
                http_addr,
                "GET",
                &format!("/api/v1/locations/loc-001/notifications?channel={channel}"),
                Some(&session),
                None,
            );
            log.body["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i["notification"] == "alert" && i["state"] == "sent")
            })
        },
    )
    .await;
}
