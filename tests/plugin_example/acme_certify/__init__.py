"""ACME's house rule: an appliance must not ship with a generic hostname.

Brings its own guest collector, so it also proves collectors are pluggable.
"""

from certify import GuestCollector, Layer, Location, Severity, check, fail, hookimpl


GENERIC = {"localhost", "debian", "ubuntu", "appliance"}


def read_hostname(reader):
    text = reader.read_text("/etc/hostname", 256)
    return None if text is None else text.strip()


@check(
    id="acme-generic-hostname",
    severity=Severity.LOW,
    layer=Layer.GUEST,
    title="Appliance ships with a generic hostname",
    remediation="Set the hostname at first boot from the instance metadata.",
)
def acme_generic_hostname(acme_hostname):
    if acme_hostname in GENERIC:
        yield fail(Location(layer=Layer.GUEST, path="/etc/hostname"), f"hostname is {acme_hostname!r}")


@hookimpl
def certify_checks():
    return [acme_generic_hostname]


@hookimpl
def certify_guest_collectors():
    return [GuestCollector(name="acme_hostname", collect=read_hostname)]
