"""The embeddings table: schema, round trip, resumable part writing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spectraclip.embeddings import (
    EmbeddingsTableError,
    PartWriter,
    is_embeddings_table,
    read_embeddings,
    write_embeddings,
)


def test_round_trip_keeps_vectors_columns_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(5, 7)).astype(np.float32)
    path = write_embeddings(tmp_path / "e.parquet", [f"a{i}" for i in range(5)], vec,
                            columns={"path": [f"/x/{i}.tif" for i in range(5)], "lon": [1.0, 2, 3, 4, 5]},
                            metadata={"bands": "B04,B03,B02", "model": {"arch": "tiny"}})
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("vector").type)
    assert schema.field("vector").type.value_type == pa.float32()
    emb = read_embeddings(path)
    assert emb.ids == [f"a{i}" for i in range(5)]
    np.testing.assert_array_equal(emb.vectors, vec)
    assert emb.columns["path"][3] == "/x/3.tif"
    assert emb.metadata["bands"] == "B04,B03,B02"
    assert emb.metadata["model"] == {"arch": "tiny"}
    assert emb.dim == 7 and is_embeddings_table(path)


def test_mismatched_lengths_and_bad_files_are_named(tmp_path):
    with pytest.raises(EmbeddingsTableError, match="3 ids"):
        write_embeddings(tmp_path / "e.parquet", ["a", "b", "c"], np.zeros((2, 4)))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(EmbeddingsTableError, match="bad.parquet"):
        read_embeddings(bad)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    assert not is_embeddings_table(other)
    with pytest.raises(EmbeddingsTableError, match="needs `id` and `vector`"):
        read_embeddings(other)


def test_part_writer_resumes_and_deduplicates(tmp_path):
    out = tmp_path / "emb.parquet"
    w = PartWriter(out, metadata={"bands": "rgb"})
    w.write(["a", "b"], np.ones((2, 3), np.float32), {"path": ["pa", "pb"]})
    # a crash here leaves the finished part; debris from an unfinished write is dropped on restart
    (w.parts_dir / "part-00009.parquet").write_bytes(b"half a file")
    w2 = PartWriter(out, metadata={"bands": "rgb"})
    assert w2.done_ids == {"a", "b"}
    w2.write(["c"], np.full((1, 3), 2, np.float32), {"path": ["pc"]})
    w2.write(["a"], np.full((1, 3), 9, np.float32), {"path": ["dup"]})  # duplicate id: first wins
    table = w2.finish()
    assert table.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(table.vectors[0], [1, 1, 1])
    assert table.columns["path"] == ["pa", "pb", "pc"]
    assert not w2.parts_dir.exists()
    assert read_embeddings(out).metadata["bands"] == "rgb"


def test_part_writer_refuses_to_resume_another_embedding_space(tmp_path):
    out = tmp_path / "emb.parquet"
    w = PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 8}, "sources": ["a"]})
    w.write(["a"], np.ones((1, 3), np.float32))
    with pytest.raises(EmbeddingsTableError, match=r"different bands \('rgb', now 's2-l1c'\).*emb.parquet.parts"):
        PartWriter(out, metadata={"bands": "s2-l1c", "model_config": {"width": 8}})
    with pytest.raises(EmbeddingsTableError, match="different model_config"):
        PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 16}})
    # the run description (sources, failures) may change on resume; new keys are fine too
    again = PartWriter(out, metadata={"bands": "rgb", "model_config": {"width": 8}, "sources": ["a", "b"],
                                      "failed": [["x", "bad"]], "note": "new"})
    assert again.done_ids == {"a"}
