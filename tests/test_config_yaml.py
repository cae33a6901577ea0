"""The config's YAML loader: libyaml's safe loader, the same data as the pure-Python one, the same errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from commhub import config
from commhub.config import ConfigError, load

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [REPO / "configs" / "commhub.yaml", REPO / "configs" / "community" / "sample.yaml"]


def test_the_c_loader_is_used_and_reads_the_shipped_config_as_the_python_one_does() -> None:
    # PyYAML from requirements.lock ships libyaml; without it start-up is several times slower.
    assert yaml.__with_libyaml__ and config._YAML_LOADER is yaml.CSafeLoader
    for f in SHIPPED:
        text = f.read_text(encoding="utf-8")
        assert yaml.load(text, Loader=config._YAML_LOADER) == yaml.load(text, Loader=yaml.SafeLoader), f.name


@pytest.mark.parametrize(("text", "expected"), [
    ("community: c.yaml\nmqtt: [1, 2\n", "line 3: not valid YAML"),  # the line the parser stopped at
    ("community: c.yaml\nmqtt: !!python/object/apply:os.system [echo hacked]\n", "line 2: not valid YAML"),
    ("community: c.yaml\nmqtt: {port: 1\n\tx: 2}\n", "not valid YAML"),
])
def test_bad_yaml_names_the_file_and_line_and_runs_nothing(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "c.yaml").write_text("site: {id: s}\ngrids: [{id: g1}]\n")
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(path) in str(e.value) and expected in str(e.value)
