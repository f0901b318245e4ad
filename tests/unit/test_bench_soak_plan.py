"""The soak's address plan (bench/soak.py): two soaks side by side never share an address,
a pool re-adds its addresses in turn, and a plan that cannot run is refused with its reason."""

from __future__ import annotations

from bench.soak import KEPT, Plan

TWO_HOURS = 7200


def test_instances_do_not_share_addresses_or_ports() -> None:
    first, second = Plan(1), Plan(2)
    used = KEPT + TWO_HOURS
    a = {first.dest_uri(i).rsplit(":", 1)[0] for i in range(used)}
    b = {second.dest_uri(i).rsplit(":", 1)[0] for i in range(used)}
    assert len(a) == used and not a & b
    assert first.kamailio_ip != second.kamailio_ip and first.peer_port != second.peer_port


def test_every_add_is_a_new_address_without_a_pool() -> None:
    plan = Plan()
    assert plan.dest_uri(0) == "sip:127.49.10.1:15349"
    assert plan.dest_uri(254) == "sip:127.49.11.1:15349"
    assert len({plan.dest_uri(i) for i in range(KEPT + TWO_HOURS)}) == KEPT + TWO_HOURS


def test_a_pool_cycles_and_never_re_adds_a_kept_address() -> None:
    plan = Plan(pool=KEPT + 100)
    assert plan.dest_uri(KEPT + 100) == plan.dest_uri(0)
    for i in range(KEPT, KEPT + 250):  # the add of i happens while i-KEPT+1 .. i-1 are kept
        kept = {plan.dest_uri(j) for j in range(i - KEPT + 1, i)}
        assert plan.dest_uri(i) not in kept


def test_plans_that_cannot_run_are_refused() -> None:
    assert Plan().problem(TWO_HOURS) == ""
    assert Plan(pool=KEPT + 100).problem(10 * TWO_HOURS) == ""
    assert "instance" in Plan(4).problem(60)
    assert "instance" in Plan(0).problem(60)
    assert f"more than {KEPT}" in Plan(pool=KEPT).problem(60)
    assert "--address-pool" in Plan().problem(10 * TWO_HOURS)
