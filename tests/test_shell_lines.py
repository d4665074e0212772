"""The README-line helpers of ``tests/shell_lines.py`` against children this test writes."""

import time

import pytest

from shell_lines import printed_line, start


def test_printed_line_finds_a_line_after_many_others_without_waiting_between_lines(tmp_path):
    process = start("for i in $(seq 500); do echo noise $i; done; echo 'address http://127.0.0.1:8123/'; sleep 30",
                    tmp_path)
    began = time.monotonic()
    try:
        found = printed_line(process, r"http://127\.0\.0\.1:(\d+)/", "address", timeout=20)
    finally:
        process.kill()
    assert found[1] == "8123"
    assert time.monotonic() - began < 10


def test_a_child_that_goes_quiet_without_exiting_fails_at_the_timeout_and_is_killed(tmp_path):
    process = start("echo starting; sleep 300", tmp_path)
    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"no address after 2 s: starting"):
        printed_line(process, r"http://", "address", timeout=2)
    assert time.monotonic() - began < 30
    assert process.wait(timeout=10) is not None


def test_a_child_that_exits_before_the_line_fails_with_its_output(tmp_path):
    process = start("echo 'Error: no such preset'; exit 3", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"stopped before address: Error: no such preset"):
        printed_line(process, r"http://", "address", timeout=20)
