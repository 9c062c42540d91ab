"""Sample counts grouped by columns, as nested dicts for DVC metrics (which flattens them)."""
from __future__ import annotations

import pyarrow as pa


def _key(column: str, value) -> str:
    # "N05" rather than "5", so metric names sort by window length in `dvc metrics show`
    return f"N{int(value):02d}" if column == "n_frames" else str(value)


def counts_by(table: pa.Table, *columns: str) -> dict:
    """Nested {col1 value: {col2 value: count}} of a table (DVC flattens nested metrics)."""
    return nested_counts(group_counts(table, *columns), *columns)


def group_counts(table: pa.Table, *columns: str) -> dict[tuple, int]:
    """{(col1 value, col2 value, ...): rows} of a table; add several tables' for a running count."""
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(list(columns)).aggregate([([], "count_all")])
    return {tuple(r[c] for c in columns): r["count_all"] for r in grouped.to_pylist()}


def nested_counts(counts: dict[tuple, int], *columns: str) -> dict:
    out: dict = {}
    for values, n in sorted(counts.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        node = out
        for c, v in zip(columns[:-1], values[:-1]):
            node = node.setdefault(_key(c, v), {})
        node[_key(columns[-1], values[-1])] = node.get(_key(columns[-1], values[-1]), 0) + n
    return out
