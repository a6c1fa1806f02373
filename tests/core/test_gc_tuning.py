"""collector_paused: the cyclic collector is off inside (nested and across threads), back on
after the last one leaves, and what existed by then is frozen out of later collections."""

import gc
import threading

from studyllm_core.gc_tuning import collector_paused


def test_paused_inside_restored_after_and_objects_frozen():
    assert gc.isenabled()
    gc.unfreeze()
    try:
        with collector_paused():
            assert not gc.isenabled()
            made = [{"i": i} for i in range(1000)]  # long-lived objects an import would make
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner block leaving does not switch it back on
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.unfreeze()


def test_a_thread_leaving_first_does_not_switch_the_collector_on_for_another():
    inside, leave = threading.Event(), threading.Event()

    def other():
        with collector_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    try:
        with collector_paused():
            thread.start()
            assert inside.wait(10)
        assert not gc.isenabled()  # the other thread is still inside
        leave.set()
        thread.join(10)
        assert gc.isenabled()
    finally:
        leave.set()
        gc.unfreeze()


def test_the_collector_stays_off_after_if_it_was_off_before():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
