"""Shared dependency of the api-data routers: the process's data services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.data.state import DataServices
from api.deps import ServicesDep


def get_data(s: ServicesDep) -> DataServices:
    """Events, telemetry, snapshots and evidence (opened in the app's lifespan)."""
    return s.data


DataDep = Annotated[DataServices, Depends(get_data)]
