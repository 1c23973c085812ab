//! TLS, with and without client certificates: the server presents a certificate from a test
//! CA; clients that trust the CA connect, clients that do not (or speak plaintext) fail, and
//! when client certificates are required only clients with one signed by the CA get through.

use std::path::Path;

use crate::common::TestServer;
use hashsieve::grpc::{ServeConfig, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn make_pki(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, names) in [
        ("server", vec!["127.0.0.1".to_string()]),
        ("client", vec!["pipeline".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), certificate.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

fn tls(dir: &Path, require_client_certificates: bool) -> ServeConfig {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    ServeConfig {
        tls: Some(TlsFiles {
            certificate: read("server.pem"),
            key: read("server.key"),
            client_ca: require_client_certificates.then(|| read("ca.pem")),
        }),
        ..ServeConfig::default()
    }
}

/// `hashsieve bank list` against `server` with extra arguments; whether it succeeded, and
/// what it said on stderr.
async fn bank_list(server: &str, args: &[String]) -> (bool, String) {
    let mut all = vec!["bank".to_string(), "list".into(), format!("--server={server}")];
    all.extend_from_slice(args);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hashsieve"))
            .args(&all)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn clients_that_trust_the_ca_connect_over_tls() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), tls(pki.path(), false)).await;
    let https = format!("https://127.0.0.1:{}", server.address.port());
    let ca = format!("--ca-cert={}", pki.path().join("ca.pem").display());

    let (ok, stderr) = bank_list(&https, std::slice::from_ref(&ca)).await;
    assert!(ok, "{stderr}");
    // A client that does not know the CA refuses the server's certificate.
    let (ok, stderr) = bank_list(&https, &[]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    // Plaintext gets nowhere.
    let (ok, _) = bank_list(&server.url(), &[]).await;
    assert!(!ok);
}

#[tokio::test]
async fn when_client_certificates_are_required_only_clients_with_one_get_through() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), tls(pki.path(), true)).await;
    let https = format!("https://127.0.0.1:{}", server.address.port());
    let file = |name: &str| pki.path().join(name).display().to_string();
    let ca = format!("--ca-cert={}", file("ca.pem"));

    let (ok, _) = bank_list(&https, std::slice::from_ref(&ca)).await;
    assert!(!ok, "a client without a certificate got through");
    let with_certificate = [
        ca,
        format!("--client-cert={}", file("client.pem")),
        format!("--client-key={}", file("client.key")),
    ];
    let (ok, stderr) = bank_list(&https, &with_certificate).await;
    assert!(ok, "{stderr}");
}
