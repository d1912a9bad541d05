"""The offline sshd configuration resolver: Include, Match, first value wins, syntax, defaults."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certify.guest.parsers import remote_access
from certify.guest.parsers.sshd_config import (
    Connection,
    compiled_defaults,
    glob_paths,
    pattern_list_match,
    resolve,
    split_args,
)

ROOT = Connection("root", "root", frozenset({"root"}))
OTHER = Connection("other", None, None)
BOB = Connection("bob", "bob", frozenset({"bob", "staff"}))


def config(files: dict[str, str], main: str = "/etc/ssh/sshd_config"):
    return resolve(files.get, lambda pattern: glob_paths(pattern, files), main)


def values(cfg, keyword, connection):
    """(value, 'path:line' or None) for every candidate, in sshd's order."""
    return [(d.value, str(d.origin)) if d else (None, None) for d in cfg.candidates(keyword, connection)]


def test_first_value_wins_across_includes_drop_in_before_main():
    cfg = config({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
        "/etc/ssh/sshd_config.d/10-vendor.conf": "PasswordAuthentication yes\n",
    })  # fmt: skip
    assert values(cfg, "PasswordAuthentication", OTHER) == [("yes", "/etc/ssh/sshd_config.d/10-vendor.conf:1")]


def test_main_file_value_before_the_include_wins():
    cfg = config({
        "/etc/ssh/sshd_config": "PasswordAuthentication no\nInclude /etc/ssh/sshd_config.d/*.conf\n",
        "/etc/ssh/sshd_config.d/10-vendor.conf": "PasswordAuthentication yes\n",
    })  # fmt: skip
    assert values(cfg, "PasswordAuthentication", OTHER) == [("no", "/etc/ssh/sshd_config:1")]


def test_include_glob_is_sorted_and_skips_dotfiles():
    cfg = config({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n",
        "/etc/ssh/sshd_config.d/20-b.conf": "PermitRootLogin no\n",
        "/etc/ssh/sshd_config.d/10-a.conf": "PermitRootLogin yes\n",
        "/etc/ssh/sshd_config.d/.00-hidden.conf": "PermitRootLogin forced-commands-only\n",
        "/etc/ssh/sshd_config.d/05-x.conf.bak": "PermitRootLogin forced-commands-only\n",
    })  # fmt: skip
    assert cfg.files == ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/10-a.conf", "/etc/ssh/sshd_config.d/20-b.conf"]
    assert values(cfg, "PermitRootLogin", ROOT) == [("yes", "/etc/ssh/sshd_config.d/10-a.conf:1")]


def test_relative_include_is_relative_to_etc_ssh_and_several_arguments_are_read_in_order():
    cfg = config({
        "/etc/ssh/sshd_config": "Include conf.d/b.conf conf.d/a.conf\n",
        "/etc/ssh/conf.d/a.conf": "X11Forwarding no\n",
        "/etc/ssh/conf.d/b.conf": "X11Forwarding yes\n",
    })  # fmt: skip
    assert values(cfg, "X11Forwarding", OTHER) == [("yes", "/etc/ssh/conf.d/b.conf:1")]


def test_include_matching_nothing_is_a_note_not_a_problem():
    cfg = config({"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n"})
    assert cfg.problems == [] and "matches no file" in cfg.notes[0]


def test_include_loop_is_bounded_and_reported():
    cfg = config({
        "/etc/ssh/sshd_config": "Include a.conf\n",
        "/etc/ssh/a.conf": "Include b.conf\n",
        "/etc/ssh/b.conf": "Include a.conf\n",
    })  # fmt: skip
    assert any("include loop" in p for p in cfg.problems)


def test_unreadable_included_file_is_a_problem():
    files = {"/etc/ssh/sshd_config": "Include x.conf\n", "/etc/ssh/x.conf": None}
    cfg = resolve(files.get, lambda p: [p] if p in files else [])
    assert cfg.problems == ["/etc/ssh/x.conf: cannot be read"]


def test_match_user_applies_to_that_user_only():
    cfg = config({"/etc/ssh/sshd_config": "PermitRootLogin no\nMatch User root\n  PermitRootLogin yes\n"})
    assert values(cfg, "PermitRootLogin", ROOT) == [("yes", "/etc/ssh/sshd_config:3")]
    assert values(cfg, "PermitRootLogin", BOB) == [("no", "/etc/ssh/sshd_config:1")]
    assert values(cfg, "PermitRootLogin", OTHER) == [("no", "/etc/ssh/sshd_config:1")]


def test_match_user_patterns_follow_openssh_negation():
    assert pattern_list_match("bob", "!root") == 0  # a negation alone matches nobody
    assert pattern_list_match("bob", "*,!root") == 1
    assert pattern_list_match("root", "*,!root") == -1
    cfg = config({"/etc/ssh/sshd_config": "Match User *,!root\n  PasswordAuthentication yes\n"})
    assert values(cfg, "PasswordAuthentication", ROOT) == [(None, None)]
    assert values(cfg, "PasswordAuthentication", OTHER)[0] == ("yes", "/etc/ssh/sshd_config:2")


def test_match_group_uses_the_connection_groups_and_is_uncertain_when_unknown():
    cfg = config({"/etc/ssh/sshd_config": "Match Group staff\n  X11Forwarding yes\n"})
    assert values(cfg, "X11Forwarding", BOB) == [("yes", "/etc/ssh/sshd_config:2")]
    assert values(cfg, "X11Forwarding", ROOT) == [(None, None)]
    assert values(cfg, "X11Forwarding", OTHER) == [("yes", "/etc/ssh/sshd_config:2"), (None, None)]


def test_match_address_may_hold_so_both_values_are_possible():
    cfg = config({"/etc/ssh/sshd_config": "PermitRootLogin no\nMatch Address 203.0.113.0/24\n  PermitRootLogin yes\n"})
    assert values(cfg, "PermitRootLogin", ROOT) == [("yes", "/etc/ssh/sshd_config:3"), ("no", "/etc/ssh/sshd_config:1")]
    [first, _] = cfg.candidates("PermitRootLogin", ROOT)
    assert first.deciding_match.describe() == "'Match Address 203.0.113.0/24' (/etc/ssh/sshd_config:2)"


def test_a_certain_match_hides_the_startup_value_and_later_matches():
    cfg = config({"/etc/ssh/sshd_config": "PasswordAuthentication no\nMatch User root\n PasswordAuthentication yes\n"
                  "Match Address 10.0.0.0/8\n PasswordAuthentication no\n"})  # fmt: skip
    assert values(cfg, "PasswordAuthentication", ROOT) == [("yes", "/etc/ssh/sshd_config:3")]


def test_match_all_ends_a_block():
    cfg = config({"/etc/ssh/sshd_config": "Match User bob\n  X11Forwarding yes\nMatch all\nPermitRootLogin yes\n"})
    assert cfg.startup("PermitRootLogin").origin.line == 4
    assert cfg.startup("X11Forwarding") is None


def test_lines_after_match_all_override_earlier_global_lines_per_connection():
    # sshd applies every option set in an active Match (Match all included) over the startup value.
    cfg = config({"/etc/ssh/sshd_config": "PasswordAuthentication no\nMatch User bob\n X11Forwarding yes\nMatch all\n"
                  "PasswordAuthentication yes\n"})  # fmt: skip
    assert cfg.startup("PasswordAuthentication").value == "no"
    assert values(cfg, "PasswordAuthentication", ROOT) == [("yes", "/etc/ssh/sshd_config:5")]


def test_match_inside_an_included_file_ends_with_that_file():
    cfg = config({
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPermitEmptyPasswords yes\n",
        "/etc/ssh/sshd_config.d/a.conf": "Match User bob\n  PermitEmptyPasswords no\n",
    })  # fmt: skip
    assert values(cfg, "PermitEmptyPasswords", ROOT) == [("yes", "/etc/ssh/sshd_config:2")]


def test_include_inside_match_applies_to_that_match():
    cfg = config({
        "/etc/ssh/sshd_config": "PasswordAuthentication no\nMatch User bob\n  Include bob.conf\n",
        "/etc/ssh/bob.conf": "PasswordAuthentication yes\n",
    })  # fmt: skip
    assert cfg.startup("PasswordAuthentication").value == "no"
    assert values(cfg, "PasswordAuthentication", BOB) == [("yes", "/etc/ssh/bob.conf:1")]
    assert values(cfg, "PasswordAuthentication", ROOT) == [("no", "/etc/ssh/sshd_config:1")]


def test_match_in_a_file_included_inside_a_match_needs_both():
    cfg = config({
        "/etc/ssh/sshd_config": "Match User bob\n  Include inner.conf\n",
        "/etc/ssh/inner.conf": "Match Address 10.0.0.0/8\n  PermitRootLogin yes\nMatch all\n  X11Forwarding yes\n",
    })  # fmt: skip
    assert values(cfg, "PermitRootLogin", ROOT) == [(None, None)]
    assert values(cfg, "PermitRootLogin", BOB) == [("yes", "/etc/ssh/inner.conf:2"), (None, None)]
    assert cfg.startup("X11Forwarding") is None  # 'Match all' inside bob's block is still bob's
    assert values(cfg, "X11Forwarding", BOB) == [("yes", "/etc/ssh/inner.conf:4")]


def test_keywords_are_case_insensitive_and_aliases_resolve():
    cfg = config({"/etc/ssh/sshd_config": "passwordAUTHENTICATION yes\nChallengeResponseAuthentication yes\n"
                  "KbdInteractiveAuthentication no\n"})  # fmt: skip
    assert cfg.startup("PasswordAuthentication").name == "passwordAUTHENTICATION"
    kbd = cfg.startup("KbdInteractiveAuthentication")
    assert (kbd.name, kbd.value) == ("ChallengeResponseAuthentication", "yes")


@pytest.mark.parametrize("line", ["PermitRootLogin=yes", "PermitRootLogin = yes", "PermitRootLogin =yes",
                                  "  PermitRootLogin\tyes  # vendor", "PermitRootLogin \"yes\""])  # fmt: skip
def test_separators_whitespace_quotes_and_trailing_comments(line):
    cfg = config({"/etc/ssh/sshd_config": f"# comment\n\n{line}\n"})
    assert cfg.startup("PermitRootLogin").args == ("yes",)


def test_quoted_arguments_keep_spaces_and_bad_quotes_are_a_problem():
    cfg = config({"/etc/ssh/sshd_config": 'AuthorizedKeysFile ".ssh/my keys" /etc/ssh/keys/%u\nBanner "unterminated\n'})
    assert cfg.startup("AuthorizedKeysFile").args == (".ssh/my keys", "/etc/ssh/keys/%u")
    assert cfg.problems == ["/etc/ssh/sshd_config:2: Banner: invalid quotes"]


def test_missing_argument_and_bad_match_are_problems():
    cfg = config({"/etc/ssh/sshd_config": "PermitRootLogin\nMatch User\n"})
    assert len(cfg.problems) == 2


def test_keyword_not_allowed_in_match_is_ignored_there():
    cfg = config({"/etc/ssh/sshd_config": "Match User bob\n  UsePAM yes\n"})
    assert cfg.startup("UsePAM") is None
    assert values(cfg, "UsePAM", BOB) == [(None, None)]
    assert "not allowed inside a Match" in cfg.notes[0]


def test_carriage_returns_are_whitespace():
    cfg = config({"/etc/ssh/sshd_config": "PasswordAuthentication no\r\nPermitRootLogin yes\r\n"})
    assert cfg.startup("PasswordAuthentication").args == ("no",)


def test_split_args():
    assert split_args('a "b c" d\\ e # rest') == ["a", "b c", "d e"]
    assert split_args("'x y'") == ["x y"]
    assert split_args("#only") == []
    with pytest.raises(ValueError):
        split_args('"open')


def test_glob_paths_is_per_component():
    paths = ["/etc/ssh/a.conf", "/etc/ssh/sub/b.conf", "/etc/ssh/.c.conf"]
    assert glob_paths("/etc/ssh/*.conf", paths) == ["/etc/ssh/a.conf"]
    assert glob_paths("/etc/ssh/*/*.conf", paths) == ["/etc/ssh/sub/b.conf"]


@pytest.mark.parametrize("os_info,root_login,assumed", [
    ({"distro": "debian", "version": "12.8"}, "prohibit-password", "debian 12.8"),
    ({"distro": "debian", "version": "8.11"}, "yes", "older than 7.0"),
    ({"distro": "centos", "version": "6.10"}, "yes", "older than 7.0"),
    ({"distro": "rhel", "version": "9.4"}, "prohibit-password", "rhel 9.4"),
    ({"distro": "alpine", "version": "3.20"}, "prohibit-password", "alpine"),
    ({}, "prohibit-password", "OS release unknown"),
])  # fmt: skip
def test_compiled_defaults_by_release(os_info, root_login, assumed):
    defaults = compiled_defaults(os_info)
    assert defaults.get("PermitRootLogin") == root_login
    assert assumed in defaults.assumption
    assert defaults.get("PasswordAuthentication") == "yes" and defaults.get("KbdInteractiveAuthentication") == "yes"
    assert defaults.get("PermitEmptyPasswords") == "no"


SEED = ("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin=\"yes\" # x\nMatch User a,!b Address 10.0.0.0/8\n"
        "  PasswordAuthentication yes\nMatch all\nAuthorizedKeysFile '%h/k' .ssh/x\n")  # fmt: skip


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from(list(SEED)), max_size=400)))
def test_resolver_and_remote_parsers_never_raise(text):
    files = {"/etc/ssh/sshd_config": text, "/etc/ssh/sshd_config.d/a.conf": text}
    cfg = config(files)
    for connection in (ROOT, OTHER, BOB):
        cfg.candidates("PasswordAuthentication", connection)
    for parse in (remote_access.inetd_services, remote_access.xinetd_services, remote_access.tunnel_commands,
                  remote_access.openvpn_client, remote_access.syslog_forwards, remote_access.netrc_summary,
                  remote_access.rhosts_entries, remote_access.vsftpd_requires_tls, remote_access.proftpd_requires_tls,
                  remote_access.pureftpd_requires_tls):  # fmt: skip
        parse(text)
