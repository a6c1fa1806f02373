"""`studyllm backfill` refuses what cannot work before anything reaches Dagster, in one line each.
(The backfill itself, through a running `studyllm dev`, is in tests/e2e/test_dev_ui.py.)"""

import socket

from studyllm_core.services.datasets import DatasetRegistry, DatasetSource


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_requests_fail_in_one_line_before_dagster_is_asked(cli, db_env, engine, tmp_path):
    path = tmp_path / "five.csv"
    path.write_text("text\n" + "".join(f"text number {i}\n" for i in range(5)))
    registry = DatasetRegistry(engine)
    registry.register(DatasetSource(name="five", path=str(path)))
    url = f"http://127.0.0.1:{closed_port()}"  # nothing listens: these must fail before asking it

    def backfill(*args: str) -> list[str]:
        result = cli(["backfill", *args, "--url", url], db_env)
        assert result.returncode != 0
        return result.stderr.strip().splitlines()

    assert backfill("nosuch", "--k-min", "2", "--k-max", "3") == [
        "error: dataset 'nosuch' is not registered: drop its file in the watched folder, "
        "or give its path in the run config (source_path)"
    ]
    assert backfill("five", "--k-min", "2", "--k-max", "6") == [
        "error: k_max=6 exceeds the 5 usable texts of dataset 'five': use k_max <= 5"
    ]
    assert backfill("five", "--k-min", "1", "--k-max", "3") == [
        "error: K must be a range with 2 <= k_min <= k_max; got k_min=1, k_max=3"
    ]
    assert backfill("five", "--k-min", "2", "--k-max", "5") == [
        f"error: no Dagster webserver answers at {url}: start it with `studyllm dev` (or pass --url / set STUDYLLM_DAGSTER_URL)"
    ]
