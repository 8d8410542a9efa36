"""On-disk cache: round trip, damaged files, keys and the default location."""

import os
from pathlib import Path

import platformdirs
import pytest
import torch

from gnpool.datasets import CacheError, cache_path, default_root, load_task
from gnpool.datasets import cache as cache_mod

SMALL = dict(num_train=10, num_val=4, num_test=4, progress=False)


def _same(a, b):
    return all(torch.equal(a._data[k], b._data[k]) for k in a._data.keys()) and \
        a._data.keys() == b._data.keys()


def test_round_trip(tmp_path):
    a = load_task("shortest_path", "train", root=tmp_path, **SMALL)
    assert a.generated and a.cache_path.is_file()
    assert a.cache_path == cache_path("shortest_path", "train", root=tmp_path,
                                      num_train=10, num_val=4, num_test=4)
    b = load_task("shortest_path", "train", root=tmp_path, **SMALL)
    assert not b.generated and _same(a, b)
    assert all(torch.equal(a[i].edge_attr, b[i].edge_attr) for i in range(len(a)))
    assert b._data.edge_index.dtype == torch.int64
    assert [p.name for p in a.cache_path.parent.iterdir()] == [a.cache_path.name], \
        "no temporary files left behind"
    c = load_task("shortest_path", "train", root=tmp_path, force_reload=True, **SMALL)
    assert c.generated and _same(a, c)


def _flip_byte(path: Path, where: float) -> None:
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [
    lambda p: _flip_byte(p, 0.7),                                   # payload bit rot
    lambda p: _flip_byte(p, 0.0),                                   # magic
    lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),  # truncated
    lambda p: p.write_bytes(p.read_bytes()[:40]),                   # header cut
    lambda p: p.write_bytes(b""),                                   # empty
    lambda p: p.write_bytes(p.read_bytes() + b"extra"),             # trailing bytes
])
def test_damaged_file_warns_and_is_regenerated(tmp_path, damage):
    a = load_task("node_shortest_path", "val", root=tmp_path, **SMALL)
    damage(a.cache_path)
    with pytest.warns(RuntimeWarning, match=f"{a.cache_path.name}.*regenerating"):
        b = load_task("node_shortest_path", "val", root=tmp_path, **SMALL)
    assert b.generated and _same(a, b)
    c = load_task("node_shortest_path", "val", root=tmp_path, **SMALL)
    assert not c.generated and _same(a, c), "the regenerated file is valid"


def test_consistent_checksum_but_bad_contents_is_rejected(tmp_path):
    a = load_task("set_sum", "train", root=tmp_path, **SMALL)
    header = cache_mod.read_header(a.cache_path)
    storage = cache_mod.read(a.cache_path, header["key"])
    storage["slices"]["x"] = storage["slices"]["x"][:-1]
    cache_mod.write(a.cache_path, storage, {"key": header["key"]})
    with pytest.warns(RuntimeWarning, match="inconsistent contents"):
        b = load_task("set_sum", "train", root=tmp_path, **SMALL)
    assert _same(a, b)


def test_file_of_another_configuration_is_rejected(tmp_path):
    a = load_task("set_max", "train", root=tmp_path, **SMALL)
    with pytest.raises(CacheError, match="another configuration"):
        cache_mod.read(a.cache_path, "0" * 64)
    with pytest.raises(CacheError, match="cannot read"):
        cache_mod.read(tmp_path / "missing.gnpd", "0" * 64)


def test_key_depends_on_what_the_split_is_drawn_from(tmp_path):
    base = cache_path("max_degree", "train", root=tmp_path)
    assert base == cache_path("max_degree", "train", root=tmp_path, train_nodes="20,30")
    assert base == cache_path("max_degree", "train", root=tmp_path, extrap_nodes=(60, 90),
                              num_test=7)
    assert base != cache_path("max_degree", "train", root=tmp_path, train_nodes=(20, 31))
    assert base != cache_path("max_degree", "train", root=tmp_path, seed=1)
    assert base != cache_path("max_degree", "val", root=tmp_path)
    assert cache_path("max_degree", "test_extrap", root=tmp_path) != \
        cache_path("max_degree", "test_extrap", root=tmp_path, extrap_nodes=(60, 90))
    # Stable across runs: a sha256 of canonical JSON, not Python's hash().
    assert base.name == "train-c736876589f9c13d81cb.gnpd"


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("GNPOOL_DATA_DIR", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    monkeypatch.delenv("GNPOOL_DATA_DIR")
    repo = Path(cache_mod.__file__).resolve().parents[2]
    expected = repo / "datasets" / "cache" if (repo / "pyproject.toml").is_file() \
        else platformdirs.user_cache_path("gnpool")
    assert default_root() == expected
    assert not (repo / "datasets" / "__init__.py").exists(), "no importable `datasets`"


def test_installed_default_root_is_the_per_user_cache(monkeypatch, tmp_path):
    # An installed gnpool: site-packages holds no pyproject.toml (and maybe Hugging Face's
    # datasets package), so nothing is written next to the package.
    site = tmp_path / "site-packages"
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text("")
    monkeypatch.setattr(cache_mod, "__file__", str(site / "gnpool" / "datasets" / "cache.py"))
    monkeypatch.delenv("GNPOOL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "gnpool"


def test_unwritable_cache_warns_and_still_returns_data(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    if os.name == "posix" and os.geteuid() == 0:
        root = blocker / "sub"  # a file as parent directory fails even for root
    else:
        root = blocker
    with pytest.warns(RuntimeWarning, match="cannot write"):
        ds = load_task("set_min", "train", root=root, **SMALL)
    assert len(ds) == 10
