"""Topic ids and log epochs (issue 27): what lets a reader tell a re-created topic from the
old one, and a log whose tail crash recovery took back from the log it was reading."""

from __future__ import annotations

import os

from broker.storage import Storage
from broker.storage.layout import CLEAN_SHUTDOWN_FILE, LOG_EPOCHS_FILE, TOPIC_ID_FILE
from broker.storage.log_epochs import LogEpochs

from .helpers import make_batch


def test_a_topic_id_is_made_at_creation_kept_across_reopen_and_new_after_recreation(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t")
    first = storage.topic_id("t")
    storage.close()
    storage = Storage(data_dir)
    assert storage.topic_id("t") == first and len(first) == 32
    storage.delete_topic("t")
    storage.create_topic("t")
    assert storage.topic_id("t") != first
    storage.close()


def test_a_topic_from_an_old_data_directory_gets_an_id_at_open(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("old")
    storage.close()
    (data_dir / "old" / TOPIC_ID_FILE).unlink()
    (data_dir / "old" / "0" / LOG_EPOCHS_FILE).unlink()
    storage = Storage(data_dir)
    made = storage.topic_id("old")
    assert (data_dir / "old" / TOPIC_ID_FILE).read_text() == made
    assert storage.log_epochs("old", 0).current == 0
    storage.close()
    assert Storage(data_dir).topic_id("old") == made


def test_an_unclean_open_starts_a_new_epoch_at_the_recovered_end(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t")
    for i in range(3):
        storage.log("t", 0).append(make_batch(i * 10, 10))
    storage.close()
    storage = Storage(data_dir)  # clean: same epoch
    assert storage.log_epochs("t", 0).current == 0
    storage.log("t", 0).flush()
    # crash: no clean-shutdown marker, and the tail torn mid-batch
    log_path = sorted((data_dir / "t" / "0").glob("*.log"))[-1]
    with open(log_path, "r+b") as f:
        f.truncate(os.path.getsize(log_path) - 50)
    (data_dir / "t" / "0" / CLEAN_SHUTDOWN_FILE).unlink(missing_ok=True)
    (data_dir / "recovery-points.json").unlink(missing_ok=True)
    storage = Storage(data_dir)
    epochs, log = storage.log_epochs("t", 0), storage.log("t", 0)
    assert log.next_offset == 20 and epochs.current == 1
    # a reader that got to 30 under epoch 0 lost 20..29; one at 20 lost nothing
    assert epochs.end_offset(0, log.next_offset) == 20
    assert epochs.end_offset(1, log.next_offset) == 20
    log.append(make_batch(20, 15))
    assert epochs.end_offset(1, log.next_offset) == 35
    assert LogEpochs(data_dir / "t" / "0").current == 1  # persisted


def test_epochs_dropped_by_a_deeper_cut_and_an_unreadable_file(tmp_path):
    epochs = LogEpochs(tmp_path)
    epochs.bump(100)
    epochs.bump(200)
    epochs.bump(150)  # recovery cut below where epoch 2 began: epoch 2's offsets were taken back
    assert LogEpochs(tmp_path).current == 3
    assert epochs.end_offset(2, 400) == 150 and epochs.end_offset(0, 400) == 100
    (tmp_path / LOG_EPOCHS_FILE).write_text("{not json")
    assert LogEpochs(tmp_path).current == 0
