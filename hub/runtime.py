"""Process-wide settings for a long-running hub process: the cyclic garbage collector.

CPython's default collector runs a young collection every 700 new container objects and, every hundred of
those, may scan every object in the process: pydantic's schemas, SQLAlchemy's metadata, the community model,
the rule state caches. A message allocates about a dozen containers (envelope, body, event, state dicts), so
the hub paid for a full scan every few thousand messages; measured in-process on the realistic feed with the
rules on, the collector took 18-24 µs of CPU per message, a fifth of the total (docs/performance.md).
Almost all of the hub's objects are made at start-up and live until it stops, and almost nothing on the hot
path forms reference cycles (reference counting frees it), so: freeze what start-up built (the collector never
looks at it again) and collect the young generation every 20,000 new objects instead of 700.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# Young objects between collections: a few MB at most of cyclic garbage waits for the next collection.
YOUNG_THRESHOLD = 20_000
# The older generations keep CPython's defaults: collected after 10 young, and 10 middle, collections.
OLDER_THRESHOLDS = (10, 10)


def tune_gc() -> None:
    """Freeze the objects start-up made and collect young objects less often; call once the hub is built."""
    gc.collect()  # start-up garbage goes now, not into the permanent generation
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    log.debug("gc: %d start-up objects frozen; thresholds %s", gc.get_freeze_count(), gc.get_threshold())
