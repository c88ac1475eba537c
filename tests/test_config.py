"""Configuration errors are one line naming the file, the line and the key."""

from __future__ import annotations

import pytest

from handlers.jungfrau1m_zmq import Jungfrau1MZmqDataEventHandler
from helpers import DEFAULT_CONFIG
from monitor.config import load_config
from monitor.errors import ConfigurationError
from monitor.processing.crystallography import CrystallographyPipeline


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_shipped_default_is_valid_and_runs_the_simulator():
    config = load_config(DEFAULT_CONFIG)
    assert config.handler_class is Jungfrau1MZmqDataEventHandler
    assert config.pipeline_class is CrystallographyPipeline
    assert config.handler_parameters.source == "simulator"
    assert config.handler_parameters.collector_rank == "first"
    assert config.handler_parameters.stop_after_acquisition is True


def test_a_misspelt_key_names_file_line_and_the_likely_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("stop_after_acquisition:", "stop_after_acquisiton:"))
    with pytest.raises(ConfigurationError) as error:
        load_config(path)
    line = line_of(path, "stop_after_acquisiton")
    assert str(error.value) == (
        f"{path}:{line}: data_retrieval_layer.stop_after_acquisiton: unknown key "
        "(did you mean 'stop_after_acquisition'?)"
    )
    assert error.value.exit_code == 2


def test_an_unknown_pipeline_class_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "class.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("pipeline: CrystallographyPipeline", "pipeline: CrystalographyPipeline"))
    with pytest.raises(ConfigurationError, match=r":\d+: processing_layer.pipeline: unknown class 'CrystalographyPipeline' "
                                                 r"\(did you mean 'CrystallographyPipeline'\?\)"):
        load_config(path)


def test_a_malformed_zmq_url_is_refused_before_any_socket_sees_it(tmp_path):
    path = tmp_path / "url.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("source: simulator", "source: tcp://127.0.0.1:notaport"))
    line = line_of(path, "notaport")
    with pytest.raises(ConfigurationError, match=rf":{line}: data_retrieval_layer.source: 'tcp://127.0.0.1:notaport' "
                                                 "is not a ZMQ endpoint"):
        load_config(path)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("min_num_peaks_for_hit: 4 ", "min_num_peaks_for_hit: lots ", "processing_layer.min_num_peaks_for_hit: Input should be a valid integer"),
        ("collector_rank: first", "collector_rank: middle", "data_retrieval_layer.collector_rank: Input should be 'first' or 'last'"),
        ("    frames: 3000", "    frams: 3000", "data_retrieval_layer.simulator.frams: unknown key (did you mean 'frames'?)"),
        ("max_events: null", "max_event: 3", "monitor.max_event: unknown key (did you mean 'max_events'?)"),
        ("  source: simulator", "  source: tcp://host:70000", "data_retrieval_layer.source: port 70000 of 'tcp://host:70000' is outside 1-65535"),
    ],
)
def test_wrong_values_and_nested_typos_are_located(tmp_path, replace, by, expected):
    path = tmp_path / "bad.yaml"
    text = DEFAULT_CONFIG.read_text()
    assert replace in text
    path.write_text(text.replace(replace, by))
    with pytest.raises(ConfigurationError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}:{line_of(path, by.strip())}: {expected}")


def test_a_missing_section_and_broken_yaml_are_reported(tmp_path):
    missing = tmp_path / "missing.yaml"
    missing.write_text("data_retrieval_layer:\n  data_event_handler: Jungfrau1MZmqDataEventHandler\n  source: simulator\n")
    with pytest.raises(ConfigurationError, match=r"processing_layer: missing key"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("processing_layer:\n  pipeline: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"broken.yaml:\d+: not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigurationError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml")


def test_a_class_may_be_named_by_its_import_path(tmp_path):
    path = tmp_path / "path.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace(
        "pipeline: CrystallographyPipeline", "pipeline: monitor.processing.crystallography:CrystallographyPipeline"))
    assert load_config(path).pipeline_class is CrystallographyPipeline
    path.write_text(DEFAULT_CONFIG.read_text().replace(
        "pipeline: CrystallographyPipeline", "pipeline: monitor.processing.crystallography:Nope"))
    with pytest.raises(ConfigurationError, match="cannot import"):
        load_config(path)
