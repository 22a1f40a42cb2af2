//! Just enough DER to read a certificate's subject common name.

/// A DER element: (tag, contents, rest).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

/// OID 2.5.4.3 (commonName), DER-encoded.
const CN_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// The subject CN of an X.509 certificate (the last CN when there are several).
pub fn subject_cn(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = element(cert)?; // Certificate SEQUENCE
    let (_, tbs, _) = element(cert)?; // TBSCertificate SEQUENCE
    let mut rest = tbs;
    let (tag, _, r) = element(rest)?;
    if tag == 0xa0 {
        rest = r; // [0] version
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..4 {
        let (_, _, r) = element(rest)?;
        rest = r;
    }
    let (_, mut subject, _) = element(rest)?;
    let mut cn = None;
    while !subject.is_empty() {
        let (_, set, r) = element(subject)?;
        subject = r;
        let mut set = set;
        while !set.is_empty() {
            let (_, atv, r) = element(set)?;
            set = r;
            let (tag, oid, r) = element(atv)?;
            if tag == 0x06 && oid == CN_OID {
                let (_, v, _) = element(r)?;
                cn = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    cn
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_cn_of_a_generated_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["x.example".to_string()]).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let k = rcgen::KeyPair::generate().expect("key");
        let c = p.self_signed(&k).expect("cert");
        assert_eq!(
            super::subject_cn(c.der()).as_deref(),
            Some("kube-apiserver")
        );
        assert_eq!(super::subject_cn(&c.der()[..40]), None);
    }
}
