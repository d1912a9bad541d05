"""Secret content rules and the small parsers beside them: pure, no guest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certify.guest.parsers import answerfiles, cloudinit, secrets, vncpasswd

AWS_ID = "AKIA" + "ZZPLANTFAKEKEY42"
AWS_SECRET = "FakePlantedSecretKey/0123456789abcdefABC"


def ids(text: str | bytes, **kw) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [m.rule_id for m in secrets.scan(data, **kw).matches]


@pytest.mark.parametrize(
    "text, rule",
    [
        (f"aws_access_key_id = {AWS_ID}\n", "aws-access-key-id"),
        (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n", "aws-secret-access-key"),
        ('{"type": "service_account", "private_key_id": "0123abcd", "private_key": "-----BEGIN"}', "gcp-service-account"),
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + "A" * 86 + "==;EndpointSuffix=core", "azure-storage-connection-string"),
        ("AZURE_STORAGE_KEY=" + "b" * 86 + "==\n", "azure-storage-account-key"),
        ("token: ghp_" + "a1" * 18 + "\n", "github-pat"),
        ("gho_" + "B2" * 18, "github-oauth"),
        ("ghs_" + "c3" * 18, "github-app-token"),
        ("github_pat_" + "a" * 22 + "_" + "b" * 59, "github-fine-grained-pat"),
        ("glpat-" + "x1Y2" * 5, "gitlab-pat"),
        ("npm_" + "Q9" * 18, "npm-access-token"),
        ("//registry.npmjs.org/:_authToken=abcdef0123456789\n", "npmrc-auth-token"),
        ("password = pypi-AgEIcHlwaS5vcmc" + "x" * 60 + "\n", "pypi-upload-token"),
        ('{"auths": {"registry.example.com": {"auth": "dXNlcjpwYXNz"}}}', "docker-config-auth"),
        ("SLACK=xoxb-1234567890-abcdefghij\n", "slack-access-token"),
        ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack-web-hook"),
        ("STRIPE=sk_live_" + "4eC39HqLyjWDarjt" + "\n", "stripe-secret-token"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt-token"),
        ("DATABASE_URL=postgres://app:S3cret-pw@db:5432/app\n", "database-dsn-password"),
        ("mongodb+srv://u:Pa55word@cluster0/x", "database-dsn-password"),
        ("url = https://deploy:S3cretPass@git.example.com/repo.git\n", "url-embedded-credentials"),
        ("db_password = hunter22\n", "generic-password"),
        ('"adminPassword": "changeme"\n', "generic-password"),
        ("DB_PASS=Sup3rS3cret\n", "generic-password"),
        ("<password>Sup3rS3cret</password>\n", "generic-password"),
        ("client_secret: 8f9aB7c6D5e4F3a2\n", "generic-secret"),
        ("API_KEY='k3y-1234567890abcd'\n", "generic-api-key"),
        ("AGE-SECRET-KEY-1" + "Q" * 58, "age-secret-key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\nAAAA\n", "putty-private-key"),
    ],
)
def test_rule_matches(text, rule):
    assert rule in ids(text)


@pytest.mark.parametrize(
    "text",
    [
        "password=\n", "password = ${DB_PASSWORD}\n", "password: $DB_PASSWORD\n", "password = <your password>\n",
        "password = xxxxxx\n", "password: '********'\n", "password = %(db_password)s\n", "password: {{ vault_pw }}\n",
        "password = os.environ['DB_PASSWORD']\n", "password = settings.DB_PASSWORD\n", "password: null\n",
        "# password = hunter22\n", "; password = hunter22\n",
        "PasswordAuthentication no\n", "password\trequisite\t\t\tpam_deny.so\n", "challengePassword\t\t= A challenge password\n",
        "lock_passwd: True\n", "bypass=abcdefgh\n", "OLDPWD=/root\n", "secret_file = /etc/app/secret\n",
        "token: abcdefghijk\n",  # one character class: a word, not a token
        "postgres://app:${DB_PASSWORD}@db/app\n", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "AKIAIOSFODNN7EXAMPLE\n",
        '"type": "service_account" without a key', "AKIA1234\n",
    ],
)
def test_no_match(text):
    assert ids(text) == []


def test_redaction_shows_four_characters_and_the_length_never_the_secret():
    (match,) = secrets.scan(f"aws_access_key_id={AWS_ID}".encode()).matches
    assert match.redacted == "AKIA**** (20 chars)" and match.line == 1
    assert secrets.redact("short-pw") == "**** (8 chars)"  # a short secret shows nothing of itself


def test_private_key_shows_its_block_type_only():
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 3
    (match,) = secrets.scan(f"x\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n".encode()).matches
    assert (match.rule_id, match.line, match.redacted) == ("private-key", 2, "RSA PRIVATE KEY block")
    assert body[:10] not in match.describe()


def test_binary_files_are_not_scanned():
    result = secrets.scan(b"\0\1\2" + f"aws_access_key_id={AWS_ID}".encode())
    assert result.binary and not result.matches


def test_only_max_size_is_scanned_and_matches_are_bounded():
    late = b"x" * 2048 + f"\n{AWS_ID}\n".encode()
    assert secrets.scan(late, max_size=1024).matches == () and secrets.scan(late, max_size=1024).truncated
    many = "".join(f"ghp_{i:036d}\n" for i in range(50)).encode()
    result = secrets.scan(many, max_matches=7)
    assert len(result.matches) == 7 and result.more_matches


def test_line_numbers_and_two_rules_on_one_value_report_once():
    text = f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    assert [(m.rule_id, m.line) for m in secrets.scan(text.encode()).matches] == [
        ("aws-access-key-id", 2), ("aws-secret-access-key", 3)]  # fmt: skip


def test_keyword_prefilter_skips_rules_whose_keyword_is_absent(monkeypatch):
    calls = []
    rule = secrets.Rule("probe", secrets.APP_SECRET, "probe", ("needle",), lambda text: calls.append(text) or iter(()))
    secrets.scan(b"haystack only", rules=(rule,))
    assert calls == []
    secrets.scan(b"a NEEDLE here", rules=(rule,))
    assert len(calls) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_scan_never_raises_on_arbitrary_bytes(data):
    secrets.scan(data, max_size=2048)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'`,;#<${%*x"), min_size=12, max_size=40))
def test_evidence_never_repeats_an_assigned_password(value):
    for m in secrets.scan(f"db_password = {value}\n".encode()).matches:
        assert value not in m.describe("/etc/app.conf")


# -- VNC ------------------------------------------------------------------------


def test_vnc_known_vector_and_round_trip():
    assert vncpasswd.encode("password").hex() == "dbd83cfd727a1458"
    assert vncpasswd.decode(vncpasswd.encode("s3cr3t")) == "s3cr3t"
    assert vncpasswd.decode(vncpasswd.encode("longer-than-8")) == "longer-t"  # VNC keeps 8 characters


def test_vnc_des_matches_a_reference_implementation():
    import os
    import warnings

    cipher = pytest.importorskip("cryptography.hazmat.primitives.ciphers")
    for _ in range(20):
        key, block = os.urandom(8), os.urandom(8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            algorithm = cipher.algorithms.TripleDES(key * 3)
        expected = cipher.Cipher(algorithm, cipher.modes.ECB()).encryptor().update(block)
        assert vncpasswd.des_block(block, key) == expected and vncpasswd.des_block(expected, key, decrypt=True) == block


@pytest.mark.parametrize(
    "data, expected",
    [
        (vncpasswd.encode("password"), "VNC password file (8 bytes, decodes to a known default password)"),
        (vncpasswd.encode("Zq7!kLp2"), "VNC password file (8 bytes, decodes to a password of 8 characters)"),
        (vncpasswd.encode("myhost"), "VNC password file (8 bytes, decodes to a known default password)"),
        (b"hunter2\n", "VNC password stored in plain text (a password of 7 characters)"),
    ],
)
def test_vnc_analysis_never_shows_the_password(data, expected):
    result = vncpasswd.analyze(data, ("myhost",))
    assert result is not None and result.describe(len(data)).replace(f"({len(data)} bytes", "(8 bytes") == expected


def test_vnc_config_files_count_only_password_lines():
    assert vncpasswd.analyze(b"# $vncPasswdFile = $vncUserDir/passwd\n", password_file=False) is None
    hexed = vncpasswd.encode("vmware").hex().encode()
    assert vncpasswd.analyze(b"Encryption=PreferOn\nPassword=" + hexed + b"\n", password_file=False).known_default
    assert vncpasswd.analyze(b"") is None and vncpasswd.analyze(b"\x01\x02") is None


# -- cloud-init -----------------------------------------------------------------


def whats(text: str) -> list[str]:
    return [i.what for i in cloudinit.analyze(text)]


def test_cloud_init_password_kinds():
    text = ("#cloud-config\npassword: Passw0rd\nchpasswd:\n  expire: false\n  users:\n    - {name: root, password: Secret1}\n"
            "    - {name: debian, type: RANDOM}\nssh_pwauth: true\nssh_authorized_keys:\n  - ssh-ed25519 AAAA x\n"
            "users:\n  - default\n  - name: svc\n    plain_text_passwd: abc\n    hashed_passwd: $6$x$y\n")  # fmt: skip
    found = whats(text)
    assert "chpasswd sets a fixed password for root" in found
    assert not any("debian" in w for w in found)  # RANDOM passwords are generated per instance
    assert any(w.startswith("password:") for w in found) and any("ssh_pwauth" in w for w in found)
    assert any("plain_text_passwd gives svc" in w for w in found) and any("hashed_passwd gives svc" in w for w in found)
    assert "Passw0rd" not in str(cloudinit.analyze(text)) and "Secret1" not in str(cloudinit.analyze(text))


def test_cloud_init_stock_config_is_clean_and_legacy_list_is_read():
    stock = "users:\n  - default\ndisable_root: true\nssh_pwauth: false\nsystem_info:\n  default_user:\n    name: debian\n    lock_passwd: True\n"
    assert whats(stock) == []
    assert whats("chpasswd:\n  list: |\n    root:R\n    admin:hunter2\n") == ["chpasswd sets a fixed password for admin"]


def test_cloud_init_non_yaml_user_data_is_read_by_lines():
    script = "#!/bin/sh\necho 'root:hunter2' | chpasswd\n"
    assert whats(script) == ["a script sets a password with chpasswd/passwd"]
    assert whats("{broken: [yaml\npassword: x\n") == ["password: sets the default user's password"]


def test_cloud_init_alias_bomb_is_bounded():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    cloudinit.analyze(bomb)  # returns (by lines) instead of walking 10**9 nodes


# -- installer answer files -----------------------------------------------------


def test_kickstart_answers():
    ks = "rootpw --iscrypted $6$abc$def\nuser --name=admin --password=Secret1 --groups=wheel\n"
    answers = answerfiles.password_answers(ks)
    assert [(a.account, a.form, a.line) for a in answers] == [("root", "password hash", 1), ("admin", "plain-text password", 2)]
    assert answerfiles.describe(answers) == "holds a root password hash (line 1); also plain-text password for admin (line 2)"
    assert answerfiles.describe(answerfiles.password_answers("rootpw --lock\n")) == "holds no password answer; root is locked"


def test_preseed_questions_and_autoinstall_answers():
    preseed = "d-i passwd/root-password password r00t\nd-i passwd/user-password-crypted password $6$x$y\n"
    assert [(a.account, a.form) for a in answerfiles.password_answers(preseed)] == [("root", "plain-text password"), ("a user", "password hash")]
    questions = "Name: passwd/root-password\nTemplate: passwd/root-password\nValue: r00t\nOwners: d-i\n\nName: passwd/user-password\nValue: \n"
    assert [(a.account, a.line) for a in answerfiles.password_answers(questions)] == [("root", 1)]
    auto = "autoinstall:\n  identity:\n    hostname: x\n    password: $6$abc$def\n    username: u\n"
    assert [a.form for a in answerfiles.password_answers(auto)] == ["password hash"]
    assert answerfiles.describe([]) == "holds no password answer"


@pytest.mark.parametrize(
    "text",
    [
        "secret = pass:insta # can be used for both client and server side\n",  # Debian's stock openssl.cnf
        "private_key\t= $dir/private/cakey.pem# The private key\n",
        "<!-- server\n  <password>repopwd</password>\n-->\n",  # Maven's settings.xml sample, commented out
        "passwd:files\n",
    ],
)
def test_stock_config_idioms_are_not_secrets(text):
    assert ids(text) == []


def test_a_crypt_hash_is_not_taken_for_a_variable():
    assert ids("admin_password: $y$j9T$abcdefgh$ijklmnopqrstuvwxyz0123456789ABCDEFG\n") == ["generic-password"]


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN RSA PRIVATE KEY-----\n" * 30_000,
        b"a" * 500_000 + b" password pass pw key token secret aws :// eyj " + b"b" * 500_000,
        b"db_password = x\napi_key: y\ntoken=z\n" * 30_000,
        b"pass" * 250_000,
    ],
    ids=["begin-without-end", "long-identifier", "many-rejected-assignments", "keyword-run"],
)
def test_hostile_megabyte_scans_in_bounded_time(data):
    import time

    start = time.perf_counter()
    secrets.scan(data)
    assert time.perf_counter() - start < 10  # linear: well under a second alone, generous for shared CPUs


def test_a_colon_after_other_words_is_prose_not_yaml():
    log = "dpkg: base-passwd: dependency problems, but configuring anyway as you requested:\n"
    assert secrets.scan(log.encode()).matches == ()
    yaml_text = "db:\n  password: Kx9vRw2Lq\n- password: Tz8wQe4Pn\n{password: Mv7cXb3Nh}\n"
    assert [m.line for m in secrets.scan(yaml_text.encode()).matches if m.rule_id == "generic-password"] == [2, 3, 4]
    assert [m.rule_id for m in secrets.scan(b"export DB_PASSWORD=Kx9vRw2Lq # set by hand\n").matches] == ["generic-password"]
