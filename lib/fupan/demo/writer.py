"""Append tables chunk by chunk to csv or parquet files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


class _Writer:
    def __init__(self, out: Path, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.files: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            path = self.out / f"{name}.{self.fmt}"
            if self.fmt == "csv":
                fh = open(path, "wb")  # noqa: SIM115 - closed in close()
                fh.write((",".join(table.schema.names) + "\n").encode("utf-8"))
                self.files[name] = fh
                self.writers[name] = pacsv.CSVWriter(
                    fh,
                    table.schema,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
                )
            else:
                self.writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
        if table.num_rows:
            self.writers[name].write_table(table)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        for fh in self.files.values():
            fh.close()
