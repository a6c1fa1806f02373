"""The sweep locks per (dataset, K): one holder per (dataset, K), a run whose K overlap waits and is told
whom for; other K and other datasets do not wait; a killed holder frees them at once."""

import signal
import subprocess
import sys
import threading

from studyllm_core.db.dataset_locks import dataset_lock

HOLD = """import sys, time
from studyllm_core.db.dataset_locks import dataset_lock
from studyllm_core.db.engine import make_engine
with dataset_lock(make_engine(sys.argv[1]), sys.argv[2], [2, 3], holder=sys.argv[3]):
    print("held", flush=True)
    time.sleep(600)
"""


def waiter(engine, dataset: str, holder: str, log: list[str], ks=(3, 4)) -> threading.Thread:
    """A thread that takes the locks of `dataset` at `ks`, logs "<holder> in", and gives them back at once."""

    def take() -> None:
        with dataset_lock(engine, dataset, ks, holder=holder, notice=log.append, poll_seconds=0.05):
            log.append(f"{holder} in")

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread


def wait_until(predicate, what: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_second_sweep_of_the_dataset_waits_for_the_first_and_says_for_whom(engine):
    log: list[str] = []
    with dataset_lock(engine, "demo", [2, 3], holder="run A"):
        second = waiter(engine, "demo", "run B", log)  # K 3 and 4: K=3 is run A's
        wait_until(lambda: log, "the second run never said it waits")
        other = waiter(engine, "other", "run C", log)  # another dataset: no wait
        other.join(30)
        apart = waiter(engine, "demo", "run D", log, ks=(4, 5))  # other K of the dataset: no wait
        apart.join(30)
        assert not other.is_alive() and not apart.is_alive()
        assert "run B in" not in log  # still held by run A
        log.append("run A out")
    second.join(30)
    assert not second.is_alive()
    waiting = log[0]
    assert "'demo' K=3 is being swept by run A (database pid" in waiting and "waiting for it to finish" in waiting
    assert "run C in" in log and log.index("run C in") < log.index("run A out") < log.index("run B in")
    assert "run D in" in log and log.index("run D in") < log.index("run A out")
    assert not any("'other'" in line or "K=4" in line or "K=5" in line for line in log)


def test_the_lock_goes_back_to_the_pool_free(engine, database_url):
    """A pooled connection that held a lock holds nothing after the block, even when it raised: another
    process (here another engine, so another session) takes it at once."""
    from studyllm_core.db.engine import make_engine

    try:
        with dataset_lock(engine, "demo", [3], holder="run A"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    other = make_engine(database_url)
    try:
        log: list[str] = []
        thread = waiter(other, "demo", "run B", log)
        thread.join(10)
        assert log == ["run B in"]
    finally:
        other.dispose()


def test_a_killed_holder_does_not_block_the_next_run(engine, database_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, database_url, "demo", "run K"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        log: list[str] = []
        thread = waiter(engine, "demo", "run B", log)
        wait_until(lambda: log, "the second run never said it waits")
        assert "swept by run K" in log[0] and "run B in" not in log
        holder.send_signal(signal.SIGKILL)  # no cleanup of any kind: the server sees the connection close
        thread.join(60)
        assert not thread.is_alive() and log[-1] == "run B in"
    finally:
        holder.kill()
        holder.wait()
