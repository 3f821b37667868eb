"""Test session: one PostgreSQL database migrated to head; each test gets an app and client.

Isolation is by emptying the tables after each test rather than a rolled-back outer
transaction, because several tests need real, separately committed transactions (concurrent
requests racing for a unique index, two app instances sharing the login throttle).

The suite runs on pytest-xdist workers (`-n auto` in pyproject.toml; `-n 0` runs it in one
process). Each worker is its own pytest session, so it gets its own database (and, unless
`TEST_DATABASE_URL` is set, its own embedded PostgreSQL), image server and temporary folders.

Passwords are hashed at `TEST_ARGON2_COST` rather than the service's production cost, which
`tests/test_security.py` covers on its own.

This module holds the session's hooks only. The fixtures are in `tests/app_fixtures.py`, and
what tests import (running an app, an in-process client, the test settings) in `tests/apps.py`.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Load the fixtures (`tests.app_fixtures`) into every process that runs tests.

    The xdist controller runs none: it starts the workers and hands tests out. Left without
    the fixtures, it does not import the application (~1.2 s), and the workers start that
    much sooner.
    """
    if hasattr(config, "workerinput"):
        atexit.register(_exit_without_teardown)
    listing = config.getoption("showfixtures") or config.getoption("show_fixtures_per_test")
    controller = (
        not listing
        and not hasattr(config, "workerinput")
        and not config.getoption("collectonly")
        and config.getoption("dist", "no") != "no"
        and bool(config.getoption("tx", None))
    )
    if not controller:
        config.pluginmanager.import_plugin("tests.app_fixtures")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `slow` tests first.

    They mostly wait (for servers to start, PostgreSQL to restart, images served slowly), so
    started early they overlap with the fast tests on the other xdist workers instead of
    finishing alone at the end of the run. The order is otherwise kept.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector's passes off the objects that live all session.

    Once the tests are collected, everything alive (modules, classes, the collected items:
    ~370,000 objects per worker) is moved out of the collector's reach (`gc.freeze`), and young
    objects are collected in larger batches. In a full run each xdist worker had spent 6-8.5 s
    of its ~100 s in the collector, mostly in full passes over those objects; now 3.5-5.5 s.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)


def _exit_without_teardown() -> None:
    """End an xdist worker at once, without the interpreter's teardown of its objects.

    The run waits for its workers to exit, and tearing down what a worker accumulated over a
    full run took up to 3 s. It is registered when the worker is configured, so every exit
    handler registered later (the embedded PostgreSQL's, the test modules') runs before it;
    results have already reached the controller over xdist's channel.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` starts one worker more than there are cores.

    A test spends much of its time waiting for PostgreSQL (a process of its own) or for a
    socket, so a core left idle by one worker's wait serves another. On the 2-core development
    machine the suite took 136 s with 2 workers and 126 s with 3.
    """
    return len(os.sched_getaffinity(0)) + 1
