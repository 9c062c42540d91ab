"""A small real run of the data stages: the manifest contract and what the pixels must satisfy."""
import json

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest

from pipeline.dataset.averaging import average
from pipeline.dataset.manifest import REQUIRED, ManifestError, load_sample, read_manifests, validate
from conftest import SMALL_OVERRIDES, deep_update, read_frames, repo_params, run_stages


@pytest.fixture(scope="module")
def rows(small_run):
    return read_manifests(small_run).to_pylist()


def test_manifests_read_as_one_table_with_the_contract_schema(small_run):
    table = ds.dataset(str(small_run / "manifests")).to_table()
    assert table.num_rows > 20
    for field in REQUIRED:
        assert table.schema.field(field.name).type == field.type, field.name
    rows = table.to_pylist()
    assert {r["method"] for r in rows} == {"fixed", "vla"}
    assert {r["n_frames"] for r in rows if r["method"] == "fixed"} == {5, 9}
    assert all(r["stop_reason"] is None for r in rows if r["method"] == "fixed")
    assert all(r["stop_reason"] in ("overlap", "quality", "flow", "max_len", "end")
               for r in rows if r["method"] == "vla")


def test_splits_follow_the_explicit_test_list(rows):
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["video_id"], r["split"]) == r["split"]
    assert split_of["grid-bbaf2n"] == "test"
    assert {v for v, s in split_of.items() if s == "train"} == {"grid-lbax4n", "webcam_short"}


def test_fmr_order_and_u(rows, small_run):
    from pipeline.dataset.landmarks import read_tracks

    picture = {v: next(iter(read_tracks(small_run.parents[1] / f"data/landmarks/{v}.parquet").values()))["picture"]
               for v in {r["video_id"] for r in rows}}
    held = 0
    for r in rows:
        n = r["n_frames"]
        # blur.units: pictures: consecutive pictures, one frame each (the first of its hold)
        span = range(r["start_frame"], r["end_frame"] + 1)
        assert sorted(r["frame_indices"]) == [f for f in span if picture[r["video_id"]][f] == f]
        assert r["pictures"] == n
        held += len(span) - n
        # the order is decided on fmr_key (default: landmark 36 truncated to source pixels):
        # x ascending, then y, then time
        keys = [(x, y, f) for (x, y), f in zip(r["fmr_key"], r["frame_indices"])]
        assert keys == sorted(keys)
        assert all(x == int(x) and y == int(y) for x, y, _ in keys)
        assert r["u"] == pytest.approx([i / (n - 1) for i in range(n)])
    # with head motion, FMR order is not always the temporal order
    assert any(r["frame_indices"] != sorted(r["frame_indices"]) for r in rows)
    assert held > 0  # the webcam clip holds frames: some windows skip them


def test_blurry_is_the_mean_of_the_sharp_frames(rows, small_run):
    for r in rows:
        blurry, sharp = load_sample(r, small_run)
        assert blurry.shape == (256, 256, 3) and sharp.shape == (r["n_frames"], 256, 256, 3)
        # blur.rounding: truncate (the authors' float mean cast to uint8)
        expected = np.floor(sharp.astype(np.float64).mean(0)).astype(np.uint8)
        np.testing.assert_array_equal(blurry, expected, err_msg=r["sample_id"])


def _independent_crop(frame, box, size):
    """Crop the box from a decoded frame with PIL (black outside it, as Image.crop pads), resize
    with PIL bicubic (crop.resize: pil), written apart from pipeline.dataset.crop."""
    from PIL import Image

    x0, y0, x1, y1 = (int(v) for v in box)
    assert (x0, y0, x1, y1) == tuple(box) and abs((x1 - x0) - (y1 - y0)) <= 1
    return np.asarray(Image.fromarray(frame).crop((x0, y0, x1, y1)).resize((size, size), Image.BICUBIC))


def test_sharp_frames_are_crops_of_the_decoded_source(rows, small_run, small_source):
    from pipeline.dataset.ingest import read_catalog

    catalog = {v["video_id"]: v for v in read_catalog(small_run.parents[1] / "data/ingest/catalog.parquet")}
    for vid in catalog:
        mine = [r for r in rows if r["video_id"] == vid][:6]
        frames = read_frames(catalog[vid]["path"])
        for r in mine:
            _, sharp = load_sample(r, small_run)
            for k, fi in enumerate(r["frame_indices"]):
                want = cv2.cvtColor(_independent_crop(frames[fi], r["crop_box"], 256), cv2.COLOR_BGR2RGB)
                assert np.array_equal(sharp[k], want), (r["sample_id"], fi)


def test_linear_light_averaging(tmp_path, small_source):
    root = run_stages(tmp_path, small_source, deep_update(SMALL_OVERRIDES, {"blur": {"gamma": 2.2}}))
    rows = read_manifests(root).to_pylist()
    assert rows and all(r["gamma"] == pytest.approx(2.2) for r in rows)
    brighter = 0
    for r in rows[::3]:
        blurry, sharp = load_sample(r, root)
        assert np.abs(blurry.astype(int) - average(sharp, 2.2).astype(int)).max() <= 1
        brighter += int(blurry.astype(int).sum() > average(sharp, 1.0).astype(int).sum())
    assert brighter > 0  # averaging light, not values, brightens edges: the two really differ


def test_two_runs_give_byte_identical_manifests(tmp_path, small_run, small_source):
    other = run_stages(tmp_path, small_source, deep_update(SMALL_OVERRIDES, {"compute": {"n_jobs": 2}}))
    mine = sorted(p.name for p in (small_run / "manifests").iterdir())
    assert mine == sorted(p.name for p in (other / "manifests").iterdir())
    for name in mine:
        assert (small_run / "manifests" / name).read_bytes() == (other / "manifests" / name).read_bytes()


def test_metrics_count_what_the_manifests_hold(small_run, rows):
    metrics = json.loads((small_run.parents[1] / "metrics/dataset.json").read_text())
    assert metrics["samples"]["total"] == len(rows)
    n9_train = sum(1 for r in rows if r["split"] == "train" and r["n_frames"] == 9 and r["method"] == "fixed")
    by_n = json.loads((small_run.parents[1] / "metrics/dataset_by_n.json").read_text())["by_n"]
    assert by_n["train"]["fixed"]["N09"] == n9_train and "by_n" not in metrics  # per N: a data file, not a metric
    ingest = json.loads((small_run.parents[1] / "metrics/ingest.json").read_text())
    assert ingest == {"frames": 270, "videos": 3, "videos_rejected": 0, "videos_test": 1, "videos_train": 2,
                      "videos_truncated": 0}


def test_validation_rejects_broken_rows(small_run):
    table = read_manifests(small_run)
    validate(table, small_run)
    bad = table.set_column(table.schema.get_field_index("split"), "split",
                           [["train"] + table["split"].to_pylist()[1:]])
    first = table["video_id"][0].as_py()
    if any(r["video_id"] == first and r["split"] == "test" for r in table.to_pylist()[1:]):
        with pytest.raises(ManifestError, match="two splits"):
            validate(bad)
    import pyarrow as pa
    broken = table.set_column(table.schema.get_field_index("u"), "u",
                              pa.array([[0.0]] * table.num_rows, pa.list_(pa.float32())))
    with pytest.raises(ManifestError, match="n_frames"):
        validate(broken)


def test_manifests_stream_batch_by_batch_to_the_same_files(small_run, tmp_path, monkeypatch):
    """The manifest stage writes batch by batch; the files must be byte-identical to writing the
    whole table at once."""
    import pyarrow.parquet as pq

    import pipeline.dataset.manifest as manifest_module
    from pipeline.dataset.fmr import FMRParams
    from pipeline.dataset.manifest import ManifestWriter, fmr_table, iter_fmr, write_manifests

    fmr = FMRParams.from_params(repo_params()["manifest"]["fmr"])
    samples = [small_run / m / "samples.parquet" for m in ("fixed", "vla")]
    import pyarrow as pa
    whole = write_manifests(pa.concat_tables([fmr_table(p, fmr) for p in samples]), tmp_path / "whole", small_run)
    writer = ManifestWriter(tmp_path / "streamed", small_run)
    for p in samples:
        for batch in iter_fmr(p, fmr, batch_size=7):  # batches far smaller than one video's rows
            writer.write(batch)
    streamed = writer.close()
    assert [p.name for p in whole] == [p.name for p in streamed]
    for a, b in zip(whole, streamed):
        assert a.read_bytes() == b.read_bytes(), a.name
    # more rows than a row group: still independent of the batching
    monkeypatch.setattr(manifest_module, "ROW_GROUP", 16)
    outs = []
    for size in (5, 64):
        writer = ManifestWriter(tmp_path / f"rg{size}", small_run)
        for p in samples:
            for batch in iter_fmr(p, fmr, batch_size=size):
                writer.write(batch)
        outs.append({p.name: p.read_bytes() for p in writer.close()})
    assert outs[0] == outs[1]
    assert pq.ParquetFile(tmp_path / "rg5" / "fixed-train.parquet").metadata.num_row_groups > 2


def test_a_failed_manifest_write_leaves_the_previous_manifests(small_run, tmp_path):
    from pipeline.dataset.manifest import ManifestWriter

    good = read_manifests(small_run)
    out = tmp_path / "manifests"
    writer = ManifestWriter(out, small_run)
    writer.write(good)
    before = {p.name: p.read_bytes() for p in writer.close()}
    writer = ManifestWriter(out, small_run)
    writer.write(good.slice(0, 10))
    with pytest.raises(ManifestError, match="not unique"):
        writer.write(good.slice(5, 10))  # sample ids repeat across batches
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before


def test_reused_worker_processes_write_into_the_current_run(tmp_path, small_source):
    """loky keeps worker processes between calls; they keep the working directory they started in.
    A second run elsewhere must still write (and find) its files in its own folder."""
    two = deep_update(SMALL_OVERRIDES, {"compute": {"n_jobs": 2}, "blur": {"fixed": {"windows": [5]}}})
    first = run_stages(tmp_path / "a", small_source, two)
    second = run_stages(tmp_path / "b", small_source, two)
    for root in (first, second):
        validate(read_manifests(root), root)
    assert sorted(p.name for p in (second / "fixed" / "frames").iterdir()) == \
        sorted(p.name for p in (first / "fixed" / "frames").iterdir())
