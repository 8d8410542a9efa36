"""Command line of gnpool.datasets (`python -m gnpool.datasets`)."""

import subprocess
import sys

import pytest

from gnpool.datasets.__main__ import main

TINY = ["--param", "num_train=8", "--param", "num_val=2", "--param", "num_test=3",
        "--no-progress"]


def test_list(capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert "| max_degree | graph | sum | max |" in out and "| set_range | set |" in out
    main(["list", "--level", "node"])
    assert "max_degree" not in capsys.readouterr().out


def test_info(capsys):
    main(["info", "shortest_path", "--param", "feature_dim=2"])
    out = capsys.readouterr().out
    assert "num_node_features=4" in out and "| `train_weights` | 1, 5 |" in out


def test_generate_then_load(tmp_path, capsys):
    main(["generate", "set_sum", "--root", str(tmp_path), "--split", "val", *TINY])
    assert "set_sum/val: 2 samples, generated in" in capsys.readouterr().out
    main(["generate", "set_sum", "--root", str(tmp_path), "--split", "val", *TINY])
    assert "loaded from cache" in capsys.readouterr().out


def test_stats_table(tmp_path, capsys):
    main(["stats", "shortest_path", "--root", str(tmp_path), *TINY,
          "--param", "extrap_nodes=30,35"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| test_extrap")]
    assert len(rows) == 1 and "| 3 | 30 / " in rows[0]
    assert "weight range" in out and "- test_extrap: general 1, barabasi_albert 1, grid 1" in out
    assert "Produced by `python -m gnpool.datasets stats shortest_path" in out


def test_errors_exit_with_message():
    with pytest.raises(SystemExit, match="no parameter bogus.*num_train"):
        main(["stats", "max_degree", "--param", "bogus=1"])
    with pytest.raises(SystemExit, match="expected NAME=VALUE"):
        main(["info", "max_degree", "--param", "oops"])
    with pytest.raises(SystemExit, match="unknown.*max_degree"):
        main(["info", "max_deg"])


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "gnpool.datasets", "list", "--level", "set"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("| set_") == 8
