//! The uplink over mutual TLS (rustls with ring): a private Mosquitto that requires a client
//! certificate, with certificates made by the `openssl` command for this test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Mosquitto, Server, gateway_args, local_broker, publish_readings, unique, wait_for};
use scalesense_gateway::{Gateway, GatewayError};

/// Run `openssl` with `args` (split on whitespace) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("openssl is not installed");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for `client_cn`.
fn make_certificates(dir: &Path, client_cn: &str) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!("req -x509 {ec} -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem"),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "127.0.0.1"), ("client", client_cn)] {
        openssl(
            dir,
            &format!("req {ec} -subj /CN={cn} -keyout {name}.key -out {name}.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.pem"
            ),
        );
    }
    // Mosquitto started as root reads its TLS files after dropping to its own user.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::set_permissions(e.unwrap().path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_over_mutual_tls() {
    let Some(local) = local_broker("forwards_over_mutual_tls") else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let id = unique("gwt-");
    make_certificates(certs.path(), &id);
    let tls_port = common::free_port();
    let c = certs.path().display();
    // A plain listener for the test server, a TLS one that requires a client certificate for
    // the gateway.
    let upstream = Mosquitto::start(&format!(
        "max_queued_messages 0\nlistener {tls_port} 127.0.0.1\ncafile {c}/ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\nrequire_certificate true\n"
    ));
    let server = Server::start(&upstream.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let secure = format!("mqtts://127.0.0.1:{tls_port}").parse().unwrap();
    let mut args = gateway_args(&id, &local, &secure, dir.path());

    // Without --ca, an mqtts:// upstream is refused up front.
    assert!(matches!(
        Gateway::start(args.clone()).await,
        Err(GatewayError::MissingCa)
    ));
    args.ca = Some(certs.path().join("ca.pem"));
    args.cert = Some(certs.path().join("client.pem"));
    args.key = Some(certs.path().join("client.key"));
    let gw = Gateway::start(args).await.unwrap();
    wait_for("the TLS uplink", Duration::from_secs(20), || async {
        gw.snapshot().await.is_some_and(|s| s.uplink_connected)
    })
    .await;
    let devices = vec![unique("d-")];
    publish_readings(&local, &devices, 10, None).await;
    server
        .wait_stored(&devices, 10, Duration::from_secs(30))
        .await;
    server.assert_exactly_once_in_order(&devices, 10);
    gw.shutdown().await.unwrap();
    common::forget_session(&format!("scalesense-gw-{id}-local"), &local).await;
}
