"""Dispatch against real PostgreSQL and SQLite: the bounded window and lost messages."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from memtail.store import dispatch, trials
from memtail.work.coordinator import dispatch as send_window
from tests.helpers import make_experiment


def test_dispatch_keeps_a_bounded_window(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    sent: list[int] = []
    assert send_window(engine, exp.id, sent.append, window=5, redispatch_after=600) == 5
    assert send_window(engine, exp.id, sent.append, window=5, redispatch_after=600) == 0
    # Two were claimed (left the queue): room for two more.
    for trial_id in sent[:2]:
        assert trials.claim(engine, trial_id, "w", 60) is not None
    assert send_window(engine, exp.id, sent.append, window=5, redispatch_after=600) == 2
    assert len(set(sent)) == 7
    # Messages presumed lost (redispatch_after elapsed) are sent again; running ones not.
    again: list[int] = []
    send_window(engine, exp.id, again.append, window=100, redispatch_after=-1)
    assert set(again) == set(sent[2:]) | (set(range(min(sent), min(sent) + 12)) - set(sent))


def test_dispatch_unmarks_what_it_could_not_send(engine: Engine) -> None:
    exp = make_experiment(engine).experiment

    def broken(trial_id: int) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        send_window(engine, exp.id, broken, window=4, redispatch_after=600)
    sent: list[int] = []
    assert send_window(engine, exp.id, sent.append, window=4, redispatch_after=600) == 4


def test_messages_missing_from_the_broker_are_sent_again(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    sent: list[int] = []
    send_window(engine, exp.id, sent.append, window=5, redispatch_after=600)
    # The broker holds all five: nothing is presumed lost.
    assert dispatch.forget_lost_dispatches(engine, broker_depth=5, grace_seconds=-1) == 0
    # The broker restarted and kept two: the three oldest go out again at once.
    assert dispatch.forget_lost_dispatches(engine, broker_depth=2, grace_seconds=-1) == 3
    again: list[int] = []
    assert send_window(engine, exp.id, again.append, window=5, redispatch_after=600) == 3
    assert set(again) <= set(sent)
    # Within the grace period a message may still be on its way: nothing is touched.
    assert dispatch.forget_lost_dispatches(engine, broker_depth=0, grace_seconds=600) == 0
