"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU they only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def held_out_images(tmp_path_factory):
    """docs/click_iou.py as a module, and two held-out `synth --images` images per subset."""
    import importlib.util
    import os

    from efficient_sam2.data.images import write_images

    path = os.path.join(os.path.dirname(__file__), "..", "docs", "click_iou.py")
    spec = importlib.util.spec_from_file_location("click_iou", path)
    click_iou = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(click_iou)
    root = tmp_path_factory.mktemp("held_out_images")
    write_images(root, 2, "val", 0, progress=False)
    return click_iou, str(root)
