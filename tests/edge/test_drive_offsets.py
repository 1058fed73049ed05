"""A drive's offset range per partition, from the offsets its start and stop records carry."""

from __future__ import annotations

from edge.drives import Drive


def test_offset_ranges_of_closed_open_and_time_only_drives():
    closed = Drive("a", 1, 2, start_offsets={"cam": [10, 20]}, end_offsets={"cam": [15, 20], "lidar": [7]})
    assert closed.offset_range("cam", 0, 100) == (10, 15)
    assert closed.offset_range("cam", 1, 100) == (20, 20)
    assert closed.offset_range("lidar", 0, 100) == (0, 7)  # created during the drive
    assert closed.offset_range("radar", 0, 100) == (0, 0)  # created after it
    assert closed.offset_range("cam", 0, 12) == (10, 12)  # never past the log end
    assert closed.offset_bounds({"cam": [100, 100]}) == ({("cam", 0): 10, ("cam", 1): 20},
                                                          {("cam", 0): 15, ("cam", 1): 20})
    open_drive = Drive("b", 3, None, open=True, start_offsets={"cam": [15]})
    assert open_drive.offset_range("cam", 0, 40) == (15, 40)
    backfilled_stop = Drive("c", 1, 2, start_offsets={"cam": [10]})  # stop written with a time only
    assert backfilled_stop.offset_range("cam", 0, 40) is None and backfilled_stop.offset_bounds({"cam": [40]}) is None
    assert Drive("d", 1, 2).offset_range("cam", 0, 40) is None
    garbage = Drive("e", 1, 2, start_offsets={"cam": ["x"]}, end_offsets={"cam": [-3]})
    assert garbage.offset_range("cam", 0, 40) == (0, 0)
