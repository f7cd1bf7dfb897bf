import numpy as np
import pytest

from libraries.artifacts import atomic_path, load_json, load_npz, save_json, save_npz


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    target = tmp_path / "metrics.json"
    save_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert load_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_npz_round_trip_without_pickles(tmp_path):
    save_npz(tmp_path / "f.npz", features=np.ones((2, 3), np.float32), paths=np.array(["a/ü.jpg", "b.jpg"]))
    data = load_npz(tmp_path / "f.npz")
    assert data["features"].shape == (2, 3) and data["paths"][0] == "a/ü.jpg"
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_npz(tmp_path / "obj.npz")
