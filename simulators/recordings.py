"""Real sensor recordings replayed as facility readings: UCI occupancy (room climate) and NAB temperature."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

UCI_FILES = ("uci-occupancy-training.txt", "uci-occupancy-test.txt")
NAB_FILE = "ambient_temperature_system_failure.csv"


class RecordingError(RuntimeError):
    """A recording is missing or malformed; the message names the file."""


def default_data_dir() -> Path:
    """../shared/data beside the repository, where recordings live (never copied into the repo)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True, slots=True)
class EnvRow:
    """One minute of room climate from the UCI occupancy data set."""

    temp_c: float
    humidity_pct: float
    light_lux: float
    co2_ppm: float
    occupied: bool


@dataclass(frozen=True, slots=True)
class Recordings:
    """The replayable series, loaded once and shared by every device."""

    env: tuple[EnvRow, ...]
    temp_c: tuple[float, ...]  # NAB ambient temperature, hourly, converted from Fahrenheit


def _load_uci(path: Path) -> list[EnvRow]:
    rows: list[EnvRow] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            if header[:6] != ["date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]:
                raise RecordingError(f"{path}: unexpected header {header!r}")
            for n, rec in enumerate(reader, start=2):
                try:
                    rows.append(EnvRow(float(rec[2]), float(rec[3]), float(rec[4]), float(rec[5]), rec[7] == "1"))
                except (IndexError, ValueError) as e:
                    raise RecordingError(f"{path}: line {n}: {e}") from None
    except OSError as e:
        raise RecordingError(f"{path}: cannot read: {e.strerror}") from None
    return rows


def _load_nab(path: Path) -> list[float]:
    values: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if next(reader) != ["timestamp", "value"]:
                raise RecordingError(f"{path}: expected header timestamp,value")
            for n, rec in enumerate(reader, start=2):
                try:
                    values.append(round((float(rec[1]) - 32.0) * 5.0 / 9.0, 2))
                except (IndexError, ValueError) as e:
                    raise RecordingError(f"{path}: line {n}: {e}") from None
    except OSError as e:
        raise RecordingError(f"{path}: cannot read: {e.strerror}") from None
    return values


def load(data_dir: Path) -> Recordings:
    """Read the recordings under data_dir/sensors, or raise RecordingError naming the file."""
    sensors = Path(data_dir) / "sensors"
    env: list[EnvRow] = []
    for name in UCI_FILES:
        env.extend(_load_uci(sensors / name))
    temps = _load_nab(sensors / NAB_FILE)
    if not env or not temps:
        raise RecordingError(f"{sensors}: recordings are empty")
    log.info("loaded %d UCI occupancy rows and %d NAB temperature rows from %s", len(env), len(temps), sensors)
    return Recordings(tuple(env), tuple(temps))
