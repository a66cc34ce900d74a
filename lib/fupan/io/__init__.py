"""Data in and out: the data contract (``schema``), reading source files (``sources``),
loading and validating them into an Ibis :class:`~fupan.io.data.Dataset` (``data``,
``validation``), the query engine (``engine``), the per-dataset cache, privacy masking and
file exports."""
