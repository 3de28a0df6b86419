"""Data sets, named by data specs (`DIR`, `folder:DIR`, `dcase2018:ROOT:SPLIT`, `shards:DIR`; see
`spec`): `DataSpec.parse(text, labels).open(OpenOptions(...))` gives a map-style `ClipSet` or a
streamed `ClipStream`.
"""

from .spec import ClipSet, ClipStream, DataSpec, OpenOptions

__all__ = ["ClipSet", "ClipStream", "DataSpec", "OpenOptions"]
