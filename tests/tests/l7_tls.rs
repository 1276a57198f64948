//! TLS: certificates from `kubernetes.io/tls` Secrets chosen by SNI (exact
//! and wildcard), the self-signed default certificate, h2 via ALPN, Secret
//! rotation, broken Secrets, and the redirect of plain HTTP to HTTPS.

use std::time::Duration;

use lb_testbed::l7::{
    CertPair, Ingress, L7Bed, Req, Rule, SERVICE_PORT, TestCa, TlsOpts, b64, docs, send_tls, tls_connect, tls_secret,
    tls_secret_raw, wait_until,
};

struct TlsBed {
    bed: L7Bed,
    ca: TestCa,
    a_cert: CertPair,
    wild_cert: CertPair,
}

/// a.com (Secret `a-tls`) → pod `host-a`; *.foo.com (Secret `wild-tls`) →
/// pod `wild`; plain.com without TLS → pod `plain`.
async fn tls_bed() -> TlsBed {
    let mut bed = L7Bed::new().expect("bed");
    let ca = TestCa::new().unwrap();
    let a_cert = ca.issue(&["a.com"]).unwrap();
    let wild_cert = ca.issue(&["*.foo.com"]).unwrap();
    for name in ["host-a", "wild", "plain"] {
        let pod = bed.echo(name).unwrap();
        bed.service(name, &[&pod]).unwrap();
    }
    bed.write("secrets.yaml", &docs(&[tls_secret("a-tls", &a_cert), tls_secret("wild-tls", &wild_cert)])).unwrap();
    let ing = Ingress::new("tls")
        .class("lb")
        .tls("a-tls", &["a.com"])
        .tls("wild-tls", &["*.foo.com"])
        .rule(Rule::host("a.com").prefix("/", "host-a", SERVICE_PORT))
        .rule(Rule::host("*.foo.com").prefix("/", "wild", SERVICE_PORT))
        .rule(Rule::host("plain.com").prefix("/", "plain", SERVICE_PORT));
    bed.ingress("tls", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    TlsBed { bed, ca, a_cert, wild_cert }
}

#[tokio::test]
async fn sni_selects_the_secret_certificate_exact_and_wildcard() {
    let t = tls_bed().await;
    let bed = &t.bed;
    for (sni, cert, pod) in [("a.com", &t.a_cert, "host-a"), ("x.foo.com", &t.wild_cert, "wild")] {
        let opts = TlsOpts::new(sni).verify(&t.ca);
        let (info, resp) = bed.ok(send_tls(bed.https_addr(), opts, &Req::get("/p?q=1")).await);
        assert_eq!(info.cert_der, cert.cert_der, "SNI {sni}: served {:?}", info.cert);
        assert_eq!((resp.status, resp.pod().as_deref()), (200, Some(pod)), "SNI {sni}: {resp}");
        let echo = resp.echo().unwrap();
        assert_eq!(echo.path, "/p?q=1");
        let port = bed.https_addr().port().to_string();
        for (name, value) in [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-scheme", "https"),
            ("x-scheme", "https"),
            ("x-forwarded-port", port.as_str()),
            ("x-forwarded-host", sni),
        ] {
            assert_eq!(echo.header_all(name), vec![value], "{name} over TLS: {:?}", echo.headers);
        }
    }
}

#[tokio::test]
async fn unknown_sni_gets_the_self_signed_default_certificate() {
    let t = tls_bed().await;
    let bed = &t.bed;
    for sni in ["unknown.example", "a.b.foo.com", "foo.com"] {
        let (_, info) = bed.ok(tls_connect(bed.https_addr(), TlsOpts::new(sni)).await);
        assert!(info.cert.self_issued, "SNI {sni}: want the self-signed default, got {:?}", info.cert);
        assert_ne!(info.cert_der, t.a_cert.cert_der);
        assert_ne!(info.cert_der, t.wild_cert.cert_der);
        // It does not verify against the test CA.
        assert!(tls_connect(bed.https_addr(), TlsOpts::new(sni).verify(&t.ca)).await.is_err());
    }
    // No SNI at all (an IP address as the server name).
    let ip = bed.https_addr().ip().to_string();
    let (_, info) = bed.ok(tls_connect(bed.https_addr(), TlsOpts::new(&ip)).await);
    assert!(info.cert.self_issued, "no SNI: {:?}", info.cert);
}

#[tokio::test]
async fn alpn_h2_and_http1_over_tls() {
    let t = tls_bed().await;
    let bed = &t.bed;
    let h2 = TlsOpts::new("a.com").verify(&t.ca).alpn(&["h2", "http/1.1"]);
    let (info, resp) = bed.ok(send_tls(bed.https_addr(), h2, &Req::post("/h2", "data")).await);
    assert_eq!(info.alpn.as_deref(), Some("h2"));
    assert_eq!((resp.status, resp.version.as_str()), (200, "HTTP/2.0"), "{resp}");
    let echo = resp.echo().unwrap();
    assert_eq!((echo.version.as_str(), echo.body.as_str()), ("HTTP/1.1", "data"), "HTTP/1.1 to the backend");
    assert_eq!(echo.host(), Some("a.com"));

    let h1 = TlsOpts::new("a.com").verify(&t.ca).alpn(&["http/1.1"]);
    let (info, resp) = bed.ok(send_tls(bed.https_addr(), h1, &Req::get("/h1")).await);
    assert_eq!(info.alpn.as_deref(), Some("http/1.1"));
    assert_eq!((resp.status, resp.version.as_str()), (200, "HTTP/1.1"), "{resp}");
    let none = TlsOpts::new("a.com").verify(&t.ca).alpn(&[]);
    let (_, resp) = bed.ok(send_tls(bed.https_addr(), none, &Req::get("/none")).await);
    assert_eq!(resp.status, 200, "{resp}");
}

#[tokio::test]
async fn plain_http_to_a_tls_host_redirects_with_308() {
    let t = tls_bed().await;
    let bed = &t.bed;
    let resp = bed.ok(bed.get("a.com", "/some/path?x=1").await);
    assert_eq!(resp.status, 308, "{resp}");
    let location = resp.header("location").unwrap_or_default();
    assert!(location.starts_with("https://a.com"), "Location {location:?}");
    assert!(location.ends_with("/some/path?x=1"), "Location {location:?}");
    assert!(resp.pod().is_none(), "answered by lb, not the backend: {resp}");
    let resp = bed.ok(bed.get("x.foo.com", "/").await);
    assert_eq!(resp.status, 308, "wildcard TLS host: {resp}");
    // A host without TLS is served over plain HTTP.
    let resp = bed.ok(bed.get("plain.com", "/").await);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("plain")), "{resp}");
}

#[tokio::test]
async fn secret_rotation_applies_to_new_handshakes() {
    let t = tls_bed().await;
    let bed = &t.bed;
    let opts = TlsOpts::new("a.com").verify(&t.ca);
    let (_, info) = bed.ok(tls_connect(bed.https_addr(), opts).await);
    assert_eq!(info.cert_der, t.a_cert.cert_der);
    let rotated = t.ca.issue(&["a.com", "www.a.com"]).unwrap();
    bed.write("secrets.yaml", &docs(&[tls_secret("a-tls", &rotated), tls_secret("wild-tls", &t.wild_cert)])).unwrap();
    let addr = bed.https_addr();
    let seen = wait_until("the rotated certificate", Duration::from_secs(5), || async {
        let (_, info) = tls_connect(addr, opts).await.ok()?;
        (info.cert_der == rotated.cert_der).then_some(info)
    })
    .await;
    let info = bed.ok(seen);
    assert_eq!(info.cert.dns_names, vec!["a.com", "www.a.com"]);
    let (_, resp) = bed.ok(send_tls(addr, opts, &Req::get("/")).await);
    assert_eq!(resp.status, 200, "{resp}");
}

#[tokio::test]
async fn broken_secret_is_skipped_and_other_hosts_still_serve() {
    let mut bed = L7Bed::new().unwrap();
    let ca = TestCa::new().unwrap();
    let good = ca.issue(&["good.com"]).unwrap();
    let pod = bed.echo("web").unwrap();
    bed.service("web", &[&pod]).unwrap();
    let bad_pem = b64(b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
    bed.write(
        "secrets.yaml",
        &docs(&[
            tls_secret("good-tls", &good),
            tls_secret_raw("bad-tls", &bad_pem, &b64(b"garbage")),
            tls_secret_raw("mismatch-tls", &good.cert_b64(), &ca.issue(&["x"]).unwrap().key_b64()),
        ]),
    )
    .unwrap();
    let ing = Ingress::new("tls")
        .class("lb")
        .tls("bad-tls", &["bad.com"])
        .tls("good-tls", &["good.com"])
        .tls("mismatch-tls", &["mismatch.com"])
        .rule(Rule::host("good.com").prefix("/", "web", SERVICE_PORT))
        .rule(Rule::host("bad.com").prefix("/", "web", SERVICE_PORT))
        .rule(Rule::host("mismatch.com").prefix("/", "web", SERVICE_PORT));
    bed.ingress("tls", &ing).unwrap();
    bed.start_lb().await.expect("lb starts with a broken Secret");
    let (info, resp) = bed.ok(send_tls(bed.https_addr(), TlsOpts::new("good.com").verify(&ca), &Req::get("/")).await);
    assert_eq!(info.cert_der, good.cert_der);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("web")), "{resp}");
    for sni in ["bad.com", "mismatch.com"] {
        // Either the default certificate or a failed handshake; never a crash.
        if let Ok((_, info)) = tls_connect(bed.https_addr(), TlsOpts::new(sni)).await {
            assert!(info.cert.self_issued, "SNI {sni}: {:?}", info.cert);
        }
    }
    assert!(bed.lb_running(), "{}", bed.logs());
    let (_, resp) = bed.ok(send_tls(bed.https_addr(), TlsOpts::new("good.com").verify(&ca), &Req::get("/")).await);
    assert_eq!(resp.status, 200);
}
