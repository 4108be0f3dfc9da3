"""save_png_atomic: a figure written as a PNG through a temporary file and a rename."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest

from hwsim.emulate.dump import save_png_atomic


def test_the_png_has_the_figure_size_times_dpi_and_no_temporary_is_left(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path = tmp_path / "f.png"
    save_png_atomic(path, fig, dpi=50)
    plt.close(fig)
    assert mpimg.imread(path).shape[:2] == (50, 100)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_a_failed_render_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("render failed")

    with pytest.raises(RuntimeError, match="render failed"):
        save_png_atomic(path, Broken(), dpi=50)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
