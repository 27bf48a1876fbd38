"""The log stream: one JSON object a line, one event name each, whoever logs."""

import json
import logging
from collections.abc import Iterator

import pytest

from connector.core.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: give pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_library_record_is_a_json_line_named_after_its_logger(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("some.library").warning("disk %s is %d%% full", "/data", 91)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "some.library.log"
    assert line["message"] == "disk /data is 91% full"
    assert line["level"] == "warning"


def test_segment_analytics_python_text_errors_stay_out_of_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    logging.getLogger("segment").error("Unknown error: [400] Bad Request")
    assert "Unknown error" not in capsys.readouterr().out


def test_a_secret_logged_under_its_name_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    get_logger().info("settings.saved", write_key="wk_live_secret")
    assert "wk_live_secret" not in capsys.readouterr().out
