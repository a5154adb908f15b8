import threading

from launch import wait_until

from service.periodic import Duty, run_duties


def test_duties_run_on_their_interval_and_survive_a_failure() -> None:
    stop = threading.Event()
    runs: list[str] = []

    def flaky() -> None:
        runs.append("flaky")
        if runs.count("flaky") == 1:
            raise RuntimeError("first run fails")

    duties = [Duty("flaky", 0.01, flaky), Duty("steady", 0.01, lambda: runs.append("steady"))]
    thread = threading.Thread(target=run_duties, args=(duties, stop))
    thread.start()
    try:
        wait_until(lambda: runs.count("flaky") >= 3, timeout=5, what="three runs")
    finally:
        stop.set()
        thread.join(timeout=5)

    assert not thread.is_alive()
    assert runs.count("steady") >= 2
