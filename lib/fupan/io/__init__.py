"""Data in and out: the data contract (``schema``), reading source files (``sources``,
``reading``), typing and checking them against the contract (``contract``, ``validation``),
cleaning (``cleaning``) and spend tiers (``tiers``), all run in order by ``data.load`` into
an Ibis :class:`~fupan.io.dataset.Dataset`; the query engine (``engine``), the per-dataset
cache, privacy masking and file exports."""
