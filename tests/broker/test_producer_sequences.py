"""Client-side producer ids and sequences (broker/client/sequences.py): a broker that cannot
answer INIT_PRODUCER_ID yet never fails a batch; the batch goes unnumbered, is counted, and
the id is asked for again after INIT_RETRY_S."""

from __future__ import annotations

import pytest

from broker.client import sequences as S
from broker.errors import BrokerUnavailableError


def test_no_broker_for_the_id_sends_unnumbered_then_asks_again(monkeypatch):
    answers = [BrokerUnavailableError("not reachable"), {"producer_id": 7, "producer_epoch": 0}]
    calls = []

    def init():
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    now = [100.0]
    monkeypatch.setattr(S.time, "monotonic", lambda: now[0])
    seqs = S.ProducerSequences(True, init)
    assert seqs.take(("t", 0), 5) == S.NO_PRODUCER
    assert seqs.take(("t", 0), 5) == S.NO_PRODUCER  # inside the retry window: no second wait
    assert len(calls) == 1 and seqs.unnumbered_batches == 2
    now[0] += S.INIT_RETRY_S
    assert seqs.take(("t", 0), 5) == (7, 0, 0)  # numbering starts at 0: unnumbered ones used none
    assert seqs.take(("t", 0), 3) == (7, 0, 5)
    assert len(calls) == 2 and seqs.unnumbered_batches == 2


def test_an_old_broker_means_no_idempotence_for_good():
    from broker.errors import InvalidRequestError

    calls = []

    def init():
        calls.append(1)
        raise InvalidRequestError("unknown request type")

    seqs = S.ProducerSequences(True, init)
    assert seqs.take(("t", 0), 1) == S.NO_PRODUCER
    assert seqs.take(("t", 0), 1) == S.NO_PRODUCER
    assert len(calls) == 1 and seqs.unnumbered_batches == 0


@pytest.mark.parametrize("count", [1, 1000])
def test_sequences_wrap_at_2_pow_31(count):
    seqs = S.ProducerSequences(True, lambda: {"producer_id": 1, "producer_epoch": 0})
    seqs._next[("t", 0)] = S.SEQUENCE_SPACE - count  # the wrap point
    assert seqs.take(("t", 0), count)[2] == S.SEQUENCE_SPACE - count
    assert seqs.take(("t", 0), 1)[2] == 0
