"""The two tables in the router namespace, through libnftables' JSON API.

Effectful. Every change is one kernel transaction, validated by a dry run
first and read back after: a failed batch leaves the previous ruleset intact.
"""

from __future__ import annotations

import json
import time
from typing import Any

from certify.isolation import render, state
from certify.isolation.netns import IsolationError, entered

LISTING_ATTEMPTS = 5


class Ruleset:
    """A libnftables context bound to the router namespace.

    The context binds its netlink socket when it is created, so it is made
    inside the namespace; later calls from any thread still land there.
    """

    def __init__(self, router_ns: str) -> None:
        try:
            import nftables  # Debian's python3-nftables; the venv sees it through --system-site-packages
        except ImportError:
            raise IsolationError("the nftables Python binding is missing (apt install python3-nftables)") from None
        with entered(router_ns):
            self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self.router_ns = router_ns
        self.last_timings: dict[str, float] = {}

    def apply(self, cmds: list[dict[str, Any]]) -> None:
        if not cmds:
            return
        doc = render.document(cmds)
        for dry in (True, False):
            started = time.perf_counter()
            self._nft.set_dry_run(dry)
            try:
                rc, _, err = self._nft.json_cmd(doc)
            finally:
                self._nft.set_dry_run(False)
            if rc != 0:
                stage = "validation" if dry else "the transaction"
                reason = " ".join(line.strip() for line in err.splitlines() if line.strip())[:400]
                raise IsolationError(f"nftables rejected {stage} in {self.router_ns}; nothing changed: {reason}")
            self.last_timings["validation" if dry else "transaction"] = time.perf_counter() - started

    def listing(self) -> dict[str, Any]:
        # nftables before mid-2023 (Debian 12 ships 1.0.6) frees a dormant table's flag before printing it
        # ("[o]" in table_flags_json): the JSON then comes out cut short now and then. Listing again reads it.
        for _attempt in range(LISTING_ATTEMPTS):
            rc, out, err = self._nft.cmd("list ruleset")
            if rc != 0:
                raise IsolationError(f"cannot list the ruleset of {self.router_ns}: {err.strip()}")
            try:
                return json.loads(out) if out.strip() else {"nftables": []}
            except json.JSONDecodeError as exc:
                problem = str(exc)
        raise IsolationError(f"nft printed unreadable JSON for the ruleset of {self.router_ns} "
                             f"{LISTING_ATTEMPTS} times ({problem})")  # fmt: skip

    def observed(self) -> state.RulesetState:
        return state.observed(self.listing())

    def observed_objects(self, objects: list[tuple[str, str, str]]) -> state.RulesetState:
        """Only some tables, chains and sets, (kind, table, name): a read-back that stays small at 1,000 vDCs.

        One call each: libnftables 1.0.6 fills its cache for the first object of a
        call only, and a single small listing costs milliseconds where the whole
        ruleset costs hundreds. A missing object is simply absent from the state.
        """
        items: list[Any] = []
        for kind, table, name in objects:
            spec = {"family": render.FAMILY, "name": table} if kind == "table" else {"family": render.FAMILY, "table": table, "name": name}
            rc, out, _ = self._nft.cmd(json.dumps({"nftables": [{"list": {kind: spec}}]}))
            if rc == 0:
                items.extend(_documents(out))
        return state.observed({"nftables": items})

    def managed_chains(self) -> list[str]:
        return sorted(name for (table, name) in self.observed().chains if table == render.MANAGED)


def _documents(out: str) -> list[Any]:
    items: list[Any] = []
    for line in out.splitlines():
        if line.strip():
            items.extend(json.loads(line).get("nftables", []))
    return items
