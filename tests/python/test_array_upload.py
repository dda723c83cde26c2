"""The fit bundle's arrays go to the server straight from memory (no .npy
written on the client): the server ends up holding exactly the bytes np.save
would have written, in the chunks an upload of those files would have cut,
and the same arrays again send nothing."""
import io
import json

import numpy as np
import pytest

from trainyard import fit


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _arrays():
    rng = np.random.default_rng(3)
    people = np.zeros(1000, dtype=[("age", "<i4"), ("height", ">f8")])
    people["age"] = rng.integers(0, 90, 1000)
    return {
        "train_x.npy": rng.standard_normal((3000, 700), dtype=np.float32),  # 8 MiB: several chunks
        "train_y.npy": rng.integers(0, 10, 3000),
        "fit_sample_weight.npy": np.ascontiguousarray(rng.random((700, 3000)).T).astype(">f8"),
        "val_x.npy": people,
        "val_y.npy": np.zeros((0, 4), np.float32),
    }


def _upload(home, tmp_path, arrays):
    main = tmp_path / "main"
    main.mkdir(exist_ok=True)
    (main / "fit_spec.json").write_text("{}")
    client = home.client()
    return client, fit._upload_bundle(client, tmp_path, arrays)


def test_the_server_holds_exactly_the_npy_bytes_of_each_array(home, tmp_path):
    arrays = _arrays()
    client, manifest = _upload(home, tmp_path, arrays)
    entries = {f["path"]: f for f in manifest["files"]}
    assert sorted(entries) == sorted(["fit_spec.json"] + [f"data/{n}" for n in arrays])
    assert [f["path"] for f in manifest["files"]] == sorted(entries)
    for name, arr in arrays.items():
        entry = entries[f"data/{name}"]
        held = b"".join(client.get_bytes(f"/v1/blobs/{h}") for h, _ in entry["chunks"])
        assert held == _npy_bytes(arr), name
        assert entry["size"] == len(held)
        loaded = np.load(io.BytesIO(held))
        assert loaded.dtype == arr.dtype and np.array_equal(loaded, arr)
    assert fit.last_transfer["data_chunks_sent"] == fit.last_transfer["data_chunks_total"] > 5


def test_the_same_arrays_again_send_nothing_and_match_a_folder_upload(home, tmp_path):
    arrays = _arrays()
    _, first = _upload(home, tmp_path, arrays)
    client, again = _upload(home, tmp_path, arrays)
    assert again == first
    assert fit.last_transfer["data_chunks_sent"] == 0
    folder = tmp_path / "written"
    folder.mkdir()
    for name, arr in arrays.items():
        np.save(folder / name, arr)
    from_files, stats = client.upload_directory(str(folder))
    assert stats["chunks_sent"] == 0  # the chunks of the files: those already sent
    by_path = {f["path"]: f["chunks"] for f in json.loads(from_files)["files"]}
    for f in first["files"]:
        if f["path"].startswith("data/"):
            assert f["chunks"] == by_path[f["path"][len("data/"):]]


def test_a_non_contiguous_buffer_is_refused_with_what_to_do(home):
    x = np.arange(100, dtype=np.float64).reshape(10, 10)[:, ::2]
    with pytest.raises(ValueError, match="ascontiguousarray"):
        home.client().upload_memory([("x.npy", b"", x)])
