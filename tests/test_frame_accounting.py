"""The frame accounting on its own: what the summary says was sent, handled and dropped, and why."""

from __future__ import annotations

from monitor.console import format_accounting
from monitor.mpi.summary import frame_accounting

SIMULATOR_THROUGH_ASSEMBLER = {"sent": 3000, "delivered": 1980, "dropped": {"workers_behind": 1020}, "estimates": {}}


def test_frames_handed_to_workers_but_never_handled_are_counted_as_stop():
    table = frame_accounting(source=SIMULATOR_THROUGH_ASSEMBLER, processed=1970, failed=2, frames_announced=1980,
                             lost_ranks=[], complete=True)
    assert table == {"sent": 3000, "processed": 1970, "failed": 2,
                     "dropped": {"stop": 8, "workers_behind": 1020}, "unaccounted": 0}


def test_with_a_lost_worker_they_are_counted_as_lost_with_it():
    table = frame_accounting(source=SIMULATOR_THROUGH_ASSEMBLER, processed=1970, failed=0, frames_announced=1980,
                             lost_ranks=[3], complete=True)
    assert table["dropped"] == {"worker_lost": 10, "workers_behind": 1020} and table["unaccounted"] == 0


def test_a_frame_sender_states_the_count_in_its_end_message():
    table = frame_accounting(source={"sent": None, "delivered": None, "dropped": {}, "estimates": {}},
                             processed=20, failed=2, frames_announced=24, lost_ranks=[], complete=True)
    assert table["sent"] == 24 and table["dropped"] == {"stop": 2} and table["unaccounted"] == 0


def test_real_receivers_do_not_say_how_many_they_sent():
    table = frame_accounting(source={"sent": None, "delivered": 1000, "dropped": {"source_gap": 3},
                                     "estimates": {"frames_never_received_after_a_lost_end": 40}},
                             processed=1000, failed=0, frames_announced=1000, lost_ranks=[], complete=True)
    assert table["sent"] is None and table["unaccounted"] is None
    assert format_accounting(table) == ("sent unknown = processed 1,000 + failed 0 + dropped 3 (source_gap 3); "
                                        "estimate: frames never received after a lost end 40")


def test_a_checkpoint_leaves_frames_in_flight_uncounted():
    table = frame_accounting(source=SIMULATOR_THROUGH_ASSEMBLER, processed=1500, failed=0, frames_announced=None,
                             lost_ranks=[], complete=False)
    assert table["dropped"] == {"workers_behind": 1020} and table["unaccounted"] is None
    assert table["in_flight"] == 480


def test_the_summary_line_adds_up():
    table = frame_accounting(source=SIMULATOR_THROUGH_ASSEMBLER, processed=1980, failed=0, frames_announced=1980,
                             lost_ranks=[], complete=True)
    assert format_accounting(table) == ("sent 3,000 = processed 1,980 + failed 0 + dropped 1,020 "
                                        "(workers_behind 1,020) + unaccounted 0")
