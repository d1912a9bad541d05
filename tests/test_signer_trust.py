"""Who vouches for a package signer: chains to a trust store, and the profile switch that requires one."""

from __future__ import annotations

import datetime
import json

import pytest
from conftest import run_certify
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_descriptor_checks import REGISTRY
from test_ingest import fresh, make_tar, mf, ovf_for, sha, vmdk_bytes  # noqa: F401 - vmdk_bytes is a fixture

from certify.bundle.ingest import IngestPolicy, ingest
from certify.bundle.signature import trust_path
from certify.errors import InputRejected

NOW = datetime.datetime.now(datetime.timezone.utc)


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def cert(name: str, issuer=None, ca: bool = False, days=(-1, 365), path_length=None, key_usage=True, key=None, digest=hashes.SHA256):
    """(key, certificate) for ``name``, signed by ``issuer`` (key, cert) or by itself.

    A CA gets KeyUsage keyCertSign unless ``key_usage`` is False (no KeyUsage) or None (KeyUsage without keyCertSign).
    """
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer[1].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0])).not_valid_after(NOW + datetime.timedelta(days=days[1])))  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        if key_usage is not False:
            builder = builder.add_extension(_usage(key_usage is True), critical=True)
    return key, builder.sign(issuer[0] if issuer else key, digest())


@pytest.fixture(scope="module")
def pki():
    root = cert("ACME Root CA", ca=True)
    intermediate = cert("ACME Signing CA", issuer=root, ca=True)
    not_a_ca = cert("ACME Web Server", issuer=root)
    return {"root": root, "intermediate": intermediate, "not-a-ca": not_a_ca, "other-root": cert("Other Root", ca=True)}


def test_trust_paths(pki):
    root, mid = pki["root"], pki["intermediate"]
    leaf = cert("ACME Appliances", issuer=root)[1]
    assert trust_path(leaf, (), (root[1],), NOW) == (True, "chains to the trust store's CN=ACME Root CA")
    via_mid = cert("ACME Appliances", issuer=mid)[1]
    assert trust_path(via_mid, (mid[1],), (root[1],), NOW) == (True, "chains to the trust store's CN=ACME Root CA")
    assert trust_path(via_mid, (), (root[1],), NOW)[0] is False  # the intermediate was not shipped
    via_server = cert("ACME Appliances", issuer=pki["not-a-ca"])[1]
    assert trust_path(via_server, (pki["not-a-ca"][1],), (root[1],), NOW)[0] is False  # a non-CA cannot issue
    trusted, why = trust_path(leaf, (), (pki["other-root"][1],), NOW)
    assert not trusted and why == "no certificate in the trust store issued CN=ACME Root CA's certificate"
    pinned = cert("Solo Vendor")[1]
    assert trust_path(pinned, (), (pinned,), NOW) == (True, "chains to the trust store's CN=Solo Vendor")
    assert trust_path(pinned, (), (root[1],), NOW) == (False, "self-signed CN=Solo Vendor is not in the trust store")
    expired = cert("ACME Appliances", issuer=root, days=(-400, -30))[1]
    assert trust_path(expired, (), (root[1],), NOW)[1].startswith("CN=ACME Appliances is not valid now")
    forged = cert("ACME Appliances", issuer=(pki["other-root"][0], root[1]))[1]  # names the root, signed by another key
    assert trust_path(forged, (), (root[1],), NOW)[0] is False


def _signed_ova(tmp_path, vmdk_bytes, signer, chain=(), name="a.ova"):
    key, certificate = signer
    ovf = ovf_for("vm-disk1.vmdk")
    manifest = mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}")
    signature = key.sign(manifest, ec.ECDSA(hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    cert_file = f"SHA256(vm.mf)= {signature.hex()}\n".encode() + pem
    return make_tar(tmp_path / name, [("vm.ovf", ovf), ("vm.mf", manifest), ("vm.cert", cert_file), ("vm-disk1.vmdk", vmdk_bytes)])


def test_a_required_trusted_signer_at_ingest(tmp_path, vmdk_bytes, pki):
    root, mid = pki["root"], pki["intermediate"]
    store = IngestPolicy(anchors=(root[1],), require_trusted_signer=True)
    good = _signed_ova(tmp_path, vmdk_bytes, cert("ACME Appliances", issuer=mid), chain=(mid[1],))
    bundle = ingest(str(good), fresh(tmp_path), policy=store)
    assert bundle.signer.trusted is True and bundle.signer.trust == "chains to the trust store's CN=ACME Root CA"
    stranger = _signed_ova(tmp_path, vmdk_bytes, cert("Mallory", issuer=pki["other-root"]), name="b.ova")
    with pytest.raises(InputRejected, match="signer CN=Mallory is not trusted \\(no certificate in the trust store issued CN=Other Root"):
        ingest(str(stranger), fresh(tmp_path), policy=store)
    lenient = ingest(str(stranger), fresh(tmp_path), policy=IngestPolicy(anchors=(root[1],)))
    assert lenient.signer.trusted is False
    unsigned = make_tar(tmp_path / "c.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), ("vm-disk1.vmdk", vmdk_bytes)])
    with pytest.raises(InputRejected, match="the package is not signed, and the profile requires a trusted signer"):
        ingest(str(unsigned), fresh(tmp_path), policy=store)
    (tmp_path / "vm.vmx").write_text('config.version = "8"\n')
    with pytest.raises(InputRejected, match="a VMX or disk image carries no signature"):
        ingest(str(tmp_path / "vm.vmx"), fresh(tmp_path), policy=store)
    assert ingest(str(stranger), fresh(tmp_path)).signer.trusted is None  # no store: nobody was asked


def test_unsigned_bundle_reports_an_untrusted_signer(tmp_path, vmdk_bytes, pki):
    check = REGISTRY.checks["unsigned-bundle"]
    stranger = _signed_ova(tmp_path, vmdk_bytes, cert("Mallory", issuer=pki["other-root"]))
    bundle = ingest(str(stranger), fresh(tmp_path), policy=IngestPolicy(anchors=(pki["root"][1],)))
    results = [r.evidence for r in check.evaluate(bundle=bundle.facts()) if r.status.value == "fail"]
    assert results == ["the signer CN=Mallory is not vouched for by the trust store: no certificate in the trust store issued "
                       "CN=Other Root's certificate"]  # fmt: skip
    pinned = cert("Solo Vendor")
    bundle = ingest(str(_signed_ova(tmp_path, vmdk_bytes, pinned, name="p.ova")), fresh(tmp_path), policy=IngestPolicy(anchors=(pinned[1],)))
    assert bundle.signer.self_signed and [r for r in check.evaluate(bundle=bundle.facts()) if r.status.value == "fail"] == []


def test_trust_store_and_the_profile_switch_on_the_command_line(tmp_path, vmdk_bytes, pki):
    stranger = _signed_ova(tmp_path, vmdk_bytes, cert("Mallory", issuer=pki["other-root"]))
    store = tmp_path / "store.pem"
    store.write_bytes(pki["root"][1].public_bytes(serialization.Encoding.PEM))
    profile = tmp_path / "signed-only.yaml"
    profile.write_text("extends: default\nrequire_trusted_signer: true\n")
    result = run_certify("scan", str(stranger), "-q", "--format", "json", "--profile", str(profile), "--trust-store", str(store))
    assert result.returncode == 2 and "is not trusted" in json.loads(result.stdout)["rejection"]["reason"]
    missing = run_certify("scan", str(stranger), "-q", "--profile", str(profile))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "certify: profile signed-only requires a trusted signer: name the trust store with --trust-store PEM"]
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for path, message in ((tmp_path / "junk.pem", "the trust store holds no PEM certificate"), (tmp_path / "none.pem", "cannot read the trust store")):
        bad = run_certify("scan", str(stranger), "-q", "--trust-store", str(path))
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr, bad.stderr
    profile.write_text("extends: default\nrequire_trusted_signer: yes please\n")
    bad = run_certify("scan", str(stranger), "-q", "--profile", str(profile), "--trust-store", str(store))
    assert bad.returncode == 2 and "require_trusted_signer must be true or false" in bad.stderr


def test_every_issuer_must_be_a_ca_allowed_to_sign_certificates(pki):
    root = pki["root"]
    # A pinned signer (not a CA) vouches for itself only: not for what its key signs, even under its own name.
    pinned = cert("Solo Vendor")
    assert trust_path(cert("Mallory", issuer=pinned)[1], (), (pinned[1],), NOW) == (False, "CN=Solo Vendor is not a CA (no BasicConstraints)")
    reissued = cert("Solo Vendor", issuer=pinned)[1]  # same name and key as the pinned certificate, not the same certificate
    assert trust_path(reissued, (), (pinned[1],), NOW)[0] is False
    vendor = cert("Vendor Leaf", issuer=root)  # a signer the store pins, itself issued by a CA
    assert trust_path(cert("Mallory", issuer=vendor)[1], (), (vendor[1],), NOW)[0] is False
    # An anchor or intermediate CA without keyCertSign issues nothing.
    no_usage = cert("Root Without KeyUsage", ca=True, key_usage=False)
    assert trust_path(cert("Vendor", issuer=no_usage)[1], (), (no_usage[1],), NOW) == (
        False, "CN=Root Without KeyUsage has no KeyUsage allowing it to sign certificates (keyCertSign)")
    mid = cert("Signing CA", issuer=root, ca=True, key_usage=None)
    trusted, why = trust_path(cert("Vendor", issuer=mid)[1], (mid[1],), (root[1],), NOW)
    assert not trusted and why == "CN=Signing CA has no keyCertSign in its KeyUsage"


def test_path_length_is_enforced():
    for path_length, trusted in ((0, False), (1, True), (None, True)):
        root = cert("Root", ca=True, path_length=path_length)
        mid = cert("Signing CA", issuer=root, ca=True)
        leaf = cert("Vendor", issuer=mid)[1]
        result = trust_path(leaf, (mid[1],), (root[1],), NOW)
        assert result[0] is trusted, (path_length, result)
        if not trusted:
            assert result[1] == "CN=Root allows 0 CA certificate(s) below it (pathLen), the chain has 1"
    root = cert("Root", ca=True, path_length=0)
    assert trust_path(cert("Vendor", issuer=root)[1], (), (root[1],), NOW)[0] is True  # the signer itself is not counted


def test_weak_signatures_and_keys_break_the_chain():
    from cryptography.hazmat.primitives.asymmetric import rsa

    root = cert("Root", ca=True)
    sha1_leaf = cert("Vendor", issuer=root, digest=hashes.SHA1)[1]
    assert trust_path(sha1_leaf, (), (root[1],), NOW) == (False, "CN=Vendor is signed with SHA1, which no longer resists forgery")
    mid = cert("Signing CA", issuer=root, ca=True, digest=hashes.SHA1)
    assert "CN=Signing CA is signed with SHA1" in trust_path(cert("Vendor", issuer=mid)[1], (mid[1],), (root[1],), NOW)[1]
    small = cert("Small Root", ca=True, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert trust_path(cert("Vendor", issuer=small)[1], (), (small[1],), NOW) == (
        False, "CN=Small Root has a 1024-bit RSA key (at least 2048 required)")
    big = cert("Big Root", ca=True, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert trust_path(cert("Vendor", issuer=big)[1], (), (big[1],), NOW)[0] is True
    try:
        md5_leaf = cert("Vendor", issuer=big, digest=hashes.MD5)[1]
    except Exception:  # an OpenSSL that refuses to make MD5 signatures
        return
    assert trust_path(md5_leaf, (), (big[1],), NOW)[1] == "CN=Vendor is signed with MD5, which no longer resists forgery"


def _rsa_signed_ova(tmp_path, vmdk_bytes, certificate_pem: bytes, key, name="a.ova", algorithm="SHA256"):
    from cryptography.hazmat.primitives.asymmetric import padding

    ovf = ovf_for("vm-disk1.vmdk")
    manifest = mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}")
    signature = key.sign(manifest, padding.PKCS1v15(), getattr(hashes, algorithm)())
    cert_file = f"{algorithm}(vm.mf)= {signature.hex()}\n".encode() + certificate_pem
    return make_tar(tmp_path / name, [("vm.ovf", ovf), ("vm.mf", manifest), ("vm.cert", cert_file), ("vm-disk1.vmdk", vmdk_bytes)])


def _patched(certificate, old: bytes, new: bytes) -> bytes:
    """The PEM of ``certificate`` with a DER substring (an OID) swapped: what no library would issue."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert old in der
    return x509.load_der_x509_certificate(der.replace(old, new)).public_bytes(serialization.Encoding.PEM)


SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101")
UNKNOWN_OID = bytes.fromhex("06092a864886f70d010163")  # 1.2.840.113549.1.1.99: assigned to nothing


def test_unreadable_certificates_reject_the_upload_on_one_line(tmp_path, vmdk_bytes):
    from test_ingest import _signer

    key, self_signed = _signer("Vendor")
    unknown_signature = _rsa_signed_ova(tmp_path, vmdk_bytes, _patched(self_signed, SHA256_WITH_RSA, UNKNOWN_OID), key, "alg.ova")
    with pytest.raises(InputRejected, match="'vm.cert': the signer's certificate is not usable: UnsupportedAlgorithm"):
        ingest(str(unknown_signature), fresh(tmp_path))
    unknown_key = _rsa_signed_ova(tmp_path, vmdk_bytes, _patched(self_signed, RSA_ENCRYPTION, UNKNOWN_OID), key, "key.ova")
    with pytest.raises(InputRejected, match="'vm.cert': the signer's certificate is not usable"):
        ingest(str(unknown_key), fresh(tmp_path))
    # An intermediate that repeats an extension, read only when a trust store walks the chain.
    root_key, root = _signer("Root")
    mid_key, _ = _signer("Inter")
    mid = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Inter")])).issuer_name(root.subject)
           .public_key(mid_key.public_key()).serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
           .not_valid_after(NOW + datetime.timedelta(days=30))
           .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), critical=False)
           .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.5"), b"\x05\x00"), critical=False)
           .sign(root_key, hashes.SHA256()))  # fmt: skip
    leaf_key, leaf = _signer("Leaf", issuer_key=mid_key, issuer_name=mid.subject)
    duplicate = _patched(mid, bytes.fromhex("06032a0305"), bytes.fromhex("06032a0304"))
    dup = _rsa_signed_ova(tmp_path, vmdk_bytes, leaf.public_bytes(serialization.Encoding.PEM) + duplicate, leaf_key, "dup.ova")
    with pytest.raises(InputRejected, match="'vm.cert': a certificate of the chain is not usable: DuplicateExtension"):
        ingest(str(dup), fresh(tmp_path), policy=IngestPolicy(anchors=(root,)))
    for ova in (unknown_signature, unknown_key):
        result = run_certify("scan", str(ova), "-q")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    store = tmp_path / "dup.pem"
    store.write_bytes(duplicate)
    result = run_certify("scan", str(unknown_key), "-q", "--trust-store", str(store))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"certify: {store}: the trust store: certificate 1 is not usable: DuplicateExtension: Duplicate 1.2.3.4 extension found"], result.stderr


def test_a_sha1_signature_is_refused_when_the_profile_refuses_sha1(tmp_path, vmdk_bytes):
    from test_ingest import _signer

    key, certificate = _signer("Vendor")
    ova = _rsa_signed_ova(tmp_path, vmdk_bytes, certificate.public_bytes(serialization.Encoding.PEM), key, algorithm="SHA1")
    assert ingest(str(ova), fresh(tmp_path)).signer.algorithm == "SHA1"
    with pytest.raises(InputRejected, match="'vm.cert': the signature uses SHA1, and the profile requires SHA256 or SHA512"):
        ingest(str(ova), fresh(tmp_path), policy=IngestPolicy(reject_sha1_manifest=True))


def test_without_a_trust_store_an_unverified_issuer_fails_unsigned_bundle(tmp_path, vmdk_bytes):
    from certify.model import Severity

    check = REGISTRY.checks["unsigned-bundle"]
    fake_ca = cert("VMware Code Signing CA", ca=True)  # made by whoever made the package; not shipped, not in any store
    bundle = ingest(str(_signed_ova(tmp_path, vmdk_bytes, cert("VMware, Inc.", issuer=fake_ca))), fresh(tmp_path))
    assert bundle.signer.trusted is None and not bundle.signer.self_signed
    results = [r for r in check.evaluate(bundle=bundle.facts()) if r.status.value == "fail"]
    assert [r.evidence for r in results] == [
        "issuer not verified: the signer CN=VMware\\, Inc. names CN=VMware Code Signing CA as its issuer, "
        "and no trust store (--trust-store) was given to verify it"]  # fmt: skip
    assert check.id == "unsigned-bundle" and check.severity is Severity.INFO
    # The same chain vouched for by a trust store holding that CA passes.
    trusted = ingest(str(tmp_path / "a.ova"), fresh(tmp_path), policy=IngestPolicy(anchors=(fake_ca[1],)))
    assert trusted.signer.trusted is True and [r for r in check.evaluate(bundle=trusted.facts()) if r.status.value == "fail"] == []
