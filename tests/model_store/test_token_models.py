"""Token models: ViT and Swin layers become (C, h, w) grids, from the manifest or inferred for timm's families,
and every layer method serves them unchanged, over HTTP."""

import base64

import pytest
import torch

from model_store import ModelLoadError
from model_store.grids import LayerGrid, token_grid_size
from tests.conftest import serve_in_process
from tests.token_models import SWIN, VIT, load_timm, seeded_swin, seeded_vit  # noqa: F401  (fixtures)


def test_token_grid_round_trip_keeps_prefix_tokens():
    tokens = torch.randn(2, 2 + 12, 5)  # two prefix tokens, a 3 x 4 patch grid, 5 channels
    grid = LayerGrid("tokens", (3, 4), prefix=2)
    as_grid = grid.to_grid(tokens)
    assert as_grid.shape == (2, 5, 3, 4)
    assert torch.equal(as_grid[1, :, 2, 1], tokens[1, 2 + 2 * 4 + 1])  # row-major patches
    assert torch.equal(grid.from_grid(as_grid, tokens), tokens)
    one_image_copies = grid.from_grid(torch.zeros(3, 5, 3, 4), tokens[:1])
    assert one_image_copies.shape == (3, 14, 5) and torch.equal(one_image_copies[2, :2], tokens[0, :2])
    channels_last = torch.randn(2, 3, 4, 5)
    cl = LayerGrid("channels_last", (3, 4))
    assert torch.equal(cl.from_grid(cl.to_grid(channels_last), channels_last), channels_last)


def test_token_grid_size_follows_the_input_aspect():
    assert token_grid_size(196, (224, 224)) == (14, 14)
    assert token_grid_size(14 * 21, (224, 336)) == (14, 21)
    assert token_grid_size(7, (224, 224)) is None


def test_a_vit_manifest_is_served_with_its_tokens_as_a_grid(seeded_vit):
    assert seeded_vit.reshape == "vit"
    assert seeded_vit.layer_grids["blocks.11.norm1"] == LayerGrid("tokens", (14, 14), prefix=1)
    assert seeded_vit.layer_shapes["blocks.11.norm1"] == (192, 14, 14)
    assert seeded_vit.layer_shapes["patch_embed.proj"] == (192, 14, 14)  # a convolution stays channels-first
    assert "patch_embed.proj" not in seeded_vit.layer_grids
    assert seeded_vit.cam_layer is None  # the class token, not an average pool, feeds the head


def test_a_swin_manifest_is_served_channels_last(seeded_swin):
    assert seeded_swin.reshape == "channels_last"
    assert seeded_swin.layer_shapes["norm"] == (768, 7, 7)
    assert seeded_swin.layer_shapes["layers.3.blocks.1.norm2"] == (768, 7, 7)  # (B, 49, C) tokens in a block
    assert seeded_swin.layer_shapes["patch_embed.proj"] == (96, 56, 56)
    assert seeded_swin.cam_layer == "norm"  # its average pool feeds the linear head


def test_the_manifest_names_the_reshape(tmp_path):
    model = load_timm(tmp_path, VIT, reshape='"vit"', prefix_tokens="1")
    assert model.layer_grids["blocks.11.norm1"].prefix == 1
    assert model.layer_shapes["blocks.11.norm1"] == (192, 14, 14)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"reshape": '"nchw"'}, "reshape must be one of"),
        ({"prefix_tokens": "1"}, "goes with reshape"),
        ({"reshape": '"vit"', "prefix_tokens": "-1"}, "whole number"),
        ({"reshape": '"none"'}, "token layers need reshape"),
    ],
)
def test_a_wrong_reshape_fails_at_start_up(tmp_path, extra, message):
    with pytest.raises(ModelLoadError, match=message):
        load_timm(tmp_path, VIT, **extra)


@pytest.mark.anyio
async def test_layer_methods_serve_token_models_and_cam_says_why_not(seeded_vit, seeded_swin, cat_jpeg):
    models = {"vit_tiny": seeded_vit, "swin_tiny": seeded_swin}
    async with serve_in_process(models) as client:
        for name, grid in (("vit_tiny", [14, 14]), ("swin_tiny", [7, 7])):
            response = await client.post(
                f"/v1/models/{name}/explain",
                params={"method": "grad_cam,layer_cam,eigen_cam", "class": "3", "map_encoding": "base64"},
                files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
            )
            assert response.status_code == 200, response.text
            explanations = response.json()["explanations"]
            assert [e["method"] for e in explanations] == ["grad_cam", "layer_cam", "eigen_cam"]
            for explanation in explanations:
                assert explanation["map"]["shape"] == grid
                assert len(base64.b64decode(explanation["map"]["data_base64"])) == 4 * grid[0] * grid[1]
                assert base64.b64decode(explanation["overlay_png"])[:8] == b"\x89PNG\r\n\x1a\n"
        refused = await client.post(
            "/v1/models/vit_tiny/explain",
            params={"method": "cam"},
            files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "method_not_applicable"
        assert "average-pool" in refused.json()["error"]["message"]
        info = (await client.get("/v1/models/vit_tiny")).json()
        assert "grad_cam" in info["methods"] and "cam" not in info["methods"]
        assert "cam" in (await client.get("/v1/models/swin_tiny")).json()["methods"]
    for model in models.values():
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.module.modules())
