"""Parameter parsing and validation of gnpool.datasets.params."""

import re

import numpy as np
import pytest

from gnpool.datasets.params import Param


def test_convert_python_values_and_strings_alike():
    ir = Param("nodes", (20, 30), "int_range", "", 2)
    assert ir.convert((20, 30)) == ir.convert("20,30") == ir.convert([20.0, 30]) == (20, 30)
    assert ir.convert("20:30") == (20, 30) and ir.convert((np.int64(3), 5)) == (3, 5)
    fr = Param("range", (1.0, 5.0), "float_range", "")
    assert fr.convert((1, 5)) == fr.convert("1,5") == (1.0, 5.0)
    assert all(isinstance(v, float) for v in fr.convert((1, 5)))
    assert Param("n", 1, "int", "").convert("7") == 7
    assert Param("fams", ("path",), "families", "").convert("path, grid") == ("path", "grid")
    assert Param("p", 0.5, "prob", "").convert("0.25") == 0.25
    assert Param("ps", (0.5,), "probs", "").convert([0.1, "1"]) == (0.1, 1.0)


@pytest.mark.parametrize("kind, value, expect", [
    ("int", "x", "an integer"),
    ("int", 2.5, "an integer"),
    ("int", True, "an integer"),
    ("int", 0, "at least 1"),
    ("int_range", (30, 20), "lo=30 is not below hi=20"),
    ("int_range", (1, 5), "at least 2"),
    ("int_range", (1, 2, 3), "got 3 values"),
    ("float_range", ("nan", 1), "not finite"),
    ("prob", 0.0, r"\(0, 1\]"),
    ("prob", 1.5, r"\(0, 1\]"),
    ("families", "path,star", r"path, cycle, ladder.*unknown 'star'"),
    ("families", "", "empty"),
    ("probs", [0.1, 2], r"\(0, 1\]"),
])
def test_invalid_values_name_argument_value_and_expectation(kind, value, expect):
    p = Param("arg", None, kind, "", 2 if kind == "int_range" else 1)
    with pytest.raises(ValueError, match=re.escape(f"parameter arg={value!r}") + ".*" + expect):
        p.convert(value)
