"""Ports for test and benchmark hubs: apart from servers', connections' and other workers' ports."""

from __future__ import annotations

import socket

from coursehub.spawner.ports import ephemeral_ports, server_port
from coursehub.tools.ports import PortPicker, quiet_ports


def test_quiet_ports_are_neither_ephemeral_nor_given_to_servers():
    quiet, ephemeral = quiet_ports(), ephemeral_ports()
    assert not set(quiet) & set(ephemeral)
    servers = {server_port() for _ in range(200)}
    assert not servers & set(quiet)


def test_workers_slices_never_share_a_port():
    pickers = [PortPicker(slot, 5) for slot in range(5)]
    picks = [{picker.pick() for _ in range(50)} for picker in pickers]
    assert all(len(p) == 50 for p in picks)  # never the same port twice within a worker
    assert len(set().union(*picks)) == 250


def test_a_port_something_listens_on_is_skipped():
    picker = PortPicker()
    held = socket.socket()
    held.bind(("127.0.0.1", picker._ports[0]))
    held.listen()
    try:
        assert picker.pick() != held.getsockname()[1]
    finally:
        held.close()


def test_the_benchmarks_hubs_draw_from_this_workers_slice():
    # `coursehub bench` run inside a test worker took ports from the whole range, other workers' too
    # (run 45 lost the benchmark smoke test to another worker's hub on its proxy's API port).
    from conftest import _PORTS, _worker_slot

    from coursehub.tools.bench.systems import free_port
    from coursehub.tools.ports import PortPicker, shared_picker

    assert shared_picker() is _PORTS
    slot, slots = _worker_slot()
    mine = set(PortPicker(slot, slots)._ports)
    assert {free_port() for _ in range(20)} <= mine
