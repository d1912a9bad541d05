"""dropbear, the SSH server of embedded images, judged by the sshd-style checks: where its flags come from, what they allow."""

from __future__ import annotations

import pytest
from memguest import guest_facts, memory_reader, scan_spec

from certify import sample
from certify.guest.parsers.dropbear import DropbearOptions, Origin, apply_args, openwrt_defaults, shell_assignments
from certify.guest.parsers.uci import parse_uci, uci_bool

ROOT, PASSWORD, EMPTY, BASELINE = ("sshd-permit-root-login", "sshd-password-authentication", "sshd-permit-empty-passwords",
                                   "sshd-hardening-baseline")  # fmt: skip
ALL = (ROOT, PASSWORD, EMPTY, BASELINE)
UCI = "/etc/config/dropbear"
DROPBEAR = b"\x7fELF\x02\x01\x01\0dropbear"
# OpenWrt 23.05's /etc/config/dropbear as shipped: passwords on, root's too.
OPENWRT_DEFAULT = "config dropbear 'main'\n\toption enable '1'\n\toption PasswordAuth '1'\n\toption RootPasswordAuth '1'\n\toption Port '22'\n"
OPENWRT_LOCKED = "config dropbear\n\toption PasswordAuth 'off'\n\toption RootPasswordAuth 'off'\n\toption Port '22'\n"


def embedded(**files: str) -> sample.GuestSpec:
    """A guest with dropbear and no OpenSSH server, plus ``files`` (path with '/' as '__')."""
    spec = sample.base_system().remove("/etc/ssh/sshd_config")
    spec.add("/usr/sbin/dropbear", DROPBEAR, 0o755)
    for name, text in files.items():
        spec.add(name.replace("__", "/").replace("_dot_", "."), text)
    return spec


def scan(spec, tmp_path, ids=ALL):
    return scan_spec(spec, tmp_path, ids)


def dropbear_fact(spec, tmp_path):
    return guest_facts(memory_reader(spec, tmp_path), ["dropbear_config"]).values["dropbear_config"]


def failing(result, check_id):
    return {(path, sev) for (i, path, sev, status) in result["findings"] if i == check_id and status == "fail"}


# -- parsers ----------------------------------------------------------------------------------------


def test_flags_are_read_as_dropbear_reads_them():
    options = DropbearOptions()
    origin = Origin("/etc/default/dropbear", 2, "DROPBEAR_ARGS=...")
    apply_args(options, ["-FR", "-sw", "-T5", "-r", "/etc/dropbear/extra", "-p", "2222", "-Djunk", "-c", "/bin/true"], origin)
    assert (options.no_password, options.no_root_login, options.no_root_password) == (origin, origin, None)
    assert options.max_auth_tries == (5, origin) and options.host_keys == [("/etc/dropbear/extra", origin)]
    assert options.authorized_keys_dir == ("junk", origin) and options.problems == []


@pytest.mark.parametrize("argv, problem", [
    (["-s", "stray"], "not an option"),
    (["-X"], "unknown option -X"),
    (["-r"], "without its argument"),
    (["-T", "many"], "bad -T value"),
])  # fmt: skip
def test_flags_dropbear_refuses_are_problems(argv, problem):
    options = DropbearOptions()
    apply_args(options, argv, Origin("/etc/inittab", 3))
    assert len(options.problems) == 1 and problem in options.problems[0]


def test_shell_variables_expand_earlier_values_and_keep_the_last():
    values, problems = shell_assignments('# comment\nDROPBEAR_ARGS="-s"\nexport DROPBEAR_ARGS="$DROPBEAR_ARGS -g ${UNSET}"\nBAD="x\n')
    assert values["DROPBEAR_ARGS"].words == ("-s", "-g") and values["DROPBEAR_ARGS"].line == 3
    assert problems == ["line 4: unbalanced quotes in BAD"]


def test_uci_sections_options_lists_and_refusals():
    uci = parse_uci("package dropbear\n\nconfig dropbear 'lan'\n\toption Port \"22\" # ssh\n\tlist keyfile '/a'\n\tlist keyfile /b\n"
                    "config dropbear\n\toption enable 0\n")  # fmt: skip
    lan, anonymous = uci.of_type("dropbear")
    assert (lan.name, lan.options["Port"].value, [v.value for v in lan.lists["keyfile"]]) == ("lan", "22", ["/a", "/b"])
    assert anonymous.label == "@dropbear[1] (line 7)" and uci.problems == []
    assert parse_uci("option orphan '1'\nconfig x\n\toption a 'b\n").problems == [
        "line 1: 'option' is not a UCI statement here", "line 3: unbalanced quotes"]
    assert [uci_bool(v) for v in ("on", "Yes", "enabled", "0", "off", "maybe")] == [True, True, True, False, False, None]


def test_openwrt_defaults_come_from_the_guests_init_script():
    old_init = "validate_section_dropbear() {\n  uci_validate_section dropbear dropbear \"${1}\" \\\n" \
               "    'PasswordAuth:bool:1' 'enable:bool:1' 'RootPasswordAuth:bool:1' 'rsakeyfile:file' 'Port:port:22'\n}\n"
    assert openwrt_defaults(old_init) == {"PasswordAuth": "1", "enable": "1", "RootPasswordAuth": "1", "rsakeyfile": "", "Port": "22"}
    assert openwrt_defaults(None)["MaxAuthTries"] == "3" and openwrt_defaults("#!/bin/sh\n")["RootLogin"] == "1"


# -- where dropbear's flags come from -------------------------------------------------------------


def test_openwrt_default_configuration_fails_at_the_lines_that_allow_passwords(tmp_path):
    result = scan(embedded(__etc__config__dropbear=OPENWRT_DEFAULT), tmp_path)
    assert result["status"] == {ROOT: "fail", PASSWORD: "fail", EMPTY: "pass", BASELINE: "pass"}  # MaxAuthTries: the init's 3
    root = result["evidence"][(ROOT, UCI)]
    assert "section 'main' of /etc/config/dropbear" in root and f"'option RootPasswordAuth '1'' at {UCI}:4" in root
    assert f"'option PasswordAuth '1'' at {UCI}:3" in result["evidence"][(PASSWORD, UCI)]


def test_openwrt_locked_down_section_passes_and_disabled_or_invalid_sections_start_nothing(tmp_path):
    assert set(scan(embedded(__etc__config__dropbear=OPENWRT_LOCKED), tmp_path)["status"].values()) == {"pass"}
    for text, why in ((OPENWRT_DEFAULT.replace("enable '1'", "enable '0'"), "disabled by 'option enable '0'' at /etc/config/dropbear:2"),
                      (OPENWRT_DEFAULT.replace("enable '1'", "enable 'sometimes'"), "is not a boolean")):  # fmt: skip
        spec = embedded(__etc__config__dropbear=text)
        assert scan(spec, tmp_path, (ROOT,))["status"][ROOT] == "not-applicable"
        [reason] = dropbear_fact(spec, tmp_path).not_started
        assert reason.startswith("/etc/config/dropbear section 'main': ") and why in reason


def test_openwrt_missing_options_take_the_init_scripts_defaults(tmp_path):
    # an older init script knows no MaxAuthTries: no -T, dropbear's own 10 tries
    old_init = "'PasswordAuth:bool:1' 'enable:bool:1' 'RootPasswordAuth:bool:1' 'Port:port:22'\n"
    spec = embedded(__etc__config__dropbear="config dropbear\n\toption PasswordAuth '0'\n", __etc__init_dot_d__dropbear=old_init)
    result = scan(spec, tmp_path)
    assert result["status"] == {ROOT: "pass", PASSWORD: "pass", EMPTY: "pass", BASELINE: "fail"}
    assert "compiled-in 10" in result["evidence"][(BASELINE, UCI)]


def test_openwrt_root_only_restrictions_and_run_as_user(tmp_path):
    spec = embedded(__etc__config__dropbear="config dropbear\n\toption RootLogin '0'\n")
    assert scan(spec, tmp_path)["status"] == {ROOT: "pass", PASSWORD: "fail", EMPTY: "pass", BASELINE: "pass"}
    spec = embedded(__etc__config__dropbear="config dropbear\n\toption PasswordAuth 'no'\n\toption RunAsUser 'dropbear'\n")
    assert set(scan(spec, tmp_path)["status"].values()) == {"pass"}


def test_every_section_is_an_instance(tmp_path):
    text = OPENWRT_LOCKED + "config dropbear 'wan'\n\toption Port '2222'\n\toption MaxAuthTries '9'\n"
    result = scan(embedded(__etc__config__dropbear=text), tmp_path)
    assert result["status"] == {ROOT: "fail", PASSWORD: "fail", EMPTY: "pass", BASELINE: "fail"}
    assert failing(result, BASELINE) == {(UCI, "low")}
    assert "section 'wan'" in result["evidence"][(ROOT, UCI)] and "section 'main'" not in result["evidence"][(ROOT, UCI)]
    assert f"'option MaxAuthTries '9'' at {UCI}:7" in result["evidence"][(BASELINE, UCI)]


def test_an_unparsable_uci_file_is_not_evaluated(tmp_path):
    result = scan(embedded(__etc__config__dropbear="config dropbear\n\toption PasswordAuth 'off\n"), tmp_path, (ROOT,))
    assert result["status"][ROOT] == "not-evaluated" and "does not parse" in result["evidence"][(ROOT, None)]


def test_buildroot_init_script_without_configuration_runs_on_compiled_in_defaults(tmp_path):
    spec = embedded(__etc__init_dot_d__S50dropbear="#!/bin/sh\ntest -r /etc/default/dropbear && . /etc/default/dropbear\n")
    result = scan(spec, tmp_path)
    assert result["status"] == {ROOT: "fail", PASSWORD: "fail", EMPTY: "pass", BASELINE: "fail"}
    script = "/etc/init.d/S50dropbear"
    assert {p for (i, p) in result["evidence"] if i != EMPTY} == {script}
    assert "no option is passed by /etc/init.d/S50dropbear" in result["evidence"][(ROOT, script)]
    assert "MaxAuthTries 10 (no -T: the compiled-in 10)" in result["evidence"][(BASELINE, script)]


@pytest.mark.parametrize("path, variable", [("/etc/default/dropbear", "DROPBEAR_ARGS"), ("/etc/default/dropbear", "DROPBEAR_EXTRA_ARGS"),
                                            ("/etc/conf.d/dropbear", "DROPBEAR_OPTS"), ("/etc/sysconfig/dropbear", "OPTIONS")])  # fmt: skip
def test_each_distributions_variables_file(tmp_path, path, variable):
    spec = embedded(**{path.replace("/", "__"): f'{variable}="-s -g -T 3"\n'})
    assert set(scan(spec, tmp_path)["status"].values()) == {"pass"}
    spec = embedded(**{path.replace("/", "__"): f'{variable}="-w -B"\n'})
    result = scan(spec, tmp_path)
    assert result["status"] == {ROOT: "pass", PASSWORD: "fail", EMPTY: "fail", BASELINE: "fail"}
    assert failing(result, EMPTY) == {(path, "high")} and "accounts other than root" in result["evidence"][(EMPTY, path)]


def test_debian_no_start_starts_nothing(tmp_path):
    spec = embedded(__etc__default__dropbear='NO_START=1\nDROPBEAR_EXTRA_ARGS=""\n')
    assert scan(spec, tmp_path, (ROOT,))["status"][ROOT] == "not-applicable"
    assert dropbear_fact(spec, tmp_path).not_started == ("/etc/default/dropbear: NO_START is set, the init script starts no dropbear",)


def test_installed_but_never_started_is_not_judged(tmp_path):
    assert scan(embedded(), tmp_path, (PASSWORD,))["status"][PASSWORD] == "not-applicable"
    assert dropbear_fact(embedded(), tmp_path).not_started == ("/usr/sbin/dropbear is installed but nothing starts it at boot",)


def test_busybox_inittab_and_inetd_lines(tmp_path):
    spec = embedded(__etc__inittab="::sysinit:/etc/init.d/rcS\n::respawn:/usr/sbin/dropbear -F -B -T 20\n",
                    __etc__inetd_dot_conf="ssh stream tcp nowait root /usr/sbin/dropbear dropbear -i -s -g -T3\n")  # fmt: skip
    result = scan(spec, tmp_path)
    assert {p for (i, p) in result["evidence"]} == {"/etc/inittab"}  # the inetd instance (-s -g -T3) passes everything
    assert "every account, root included" in result["evidence"][(EMPTY, "/etc/inittab")]
    assert "-T 20" in result["evidence"][(BASELINE, "/etc/inittab")]


def test_dropbearmulti_and_refused_flags(tmp_path):
    spec = embedded(__etc__inittab="::respawn:/usr/sbin/dropbearmulti dropbear -F -s -g -X\n")
    result = scan(spec, tmp_path, (ROOT,))
    assert result["status"][ROOT] == "not-evaluated" and "unknown option -X" in result["evidence"][(ROOT, None)]


def test_two_factor_never_takes_a_password_alone(tmp_path):
    spec = embedded(__etc__default__dropbear='DROPBEAR_ARGS="-t -T 3"\n')
    assert set(scan(spec, tmp_path)["status"].values()) == {"pass"}


def test_forwarding_flags_only_when_asked(tmp_path):
    from certify.plugins.manager import get_plugin_manager, load_registry

    check = load_registry(get_plugin_manager(autoload=False)).checks[BASELINE]
    facts = guest_facts(memory_reader(embedded(__etc__default__dropbear='DROPBEAR_ARGS="-T 3 -j"\n'), tmp_path),
                        ["sshd_config", "dropbear_config"])  # fmt: skip
    results = list(check.evaluate(sshd_config=facts.values["sshd_config"], dropbear_config=facts.values["dropbear_config"],
                                  params={**check.params, "check_forwarding": True}))  # fmt: skip
    assert [r.location.key for r in results] == ["dropbear -k"]


def test_sshd_and_dropbear_side_by_side(tmp_path):
    spec = sample.base_system().add("/usr/sbin/dropbear", DROPBEAR, 0o755).add(UCI, OPENWRT_DEFAULT)
    spec.add("/etc/ssh/sshd_config.d/10-support.conf", "PasswordAuthentication yes\n")
    result = scan(spec, tmp_path, (PASSWORD,))
    assert failing(result, PASSWORD) == {("/etc/ssh/sshd_config.d/10-support.conf", "high"), (UCI, "high")}


def test_findings_name_the_disk_that_holds_the_deciding_file(tmp_path):
    from certify.plugins.manager import get_plugin_manager, load_registry

    spec = sample.base_system().add("/usr/sbin/dropbear", DROPBEAR, 0o755).add(UCI, OPENWRT_DEFAULT)
    spec.add("/etc/ssh/sshd_config.d/10-support.conf", "PasswordAuthentication yes\n")
    check = load_registry(get_plugin_manager(autoload=False)).checks[PASSWORD]
    facts = guest_facts(memory_reader(spec, tmp_path), ["sshd_config", "dropbear_config"])
    results = check.evaluate(sshd_config=facts.values["sshd_config"], dropbear_config=facts.values["dropbear_config"])
    assert sorted((r.location.path, r.location.file) for r in results) == [
        ("/etc/config/dropbear", "disk1.vmdk"), ("/etc/ssh/sshd_config.d/10-support.conf", "disk1.vmdk")]
