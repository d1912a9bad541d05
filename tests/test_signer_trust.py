"""Who vouches for a package signer: chains to a trust store, and the profile switch that requires one."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certify.errors import InputRejected
from certify.ingest import IngestPolicy, ingest
from certify.signature import trust_path
from conftest import run_certify
from test_descriptor_checks import REGISTRY
from test_ingest import fresh, make_tar, mf, ovf_for, sha, vmdk_bytes  # noqa: F401 - vmdk_bytes is a fixture

NOW = datetime.datetime.now(datetime.timezone.utc)


def cert(name: str, issuer=None, ca: bool = False, days=(-1, 365)):
    """(key, certificate) for ``name``, signed by ``issuer`` (key, cert) or by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer[1].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0])).not_valid_after(NOW + datetime.timedelta(days=days[1])))  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


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
