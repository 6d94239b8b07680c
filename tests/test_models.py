"""Backbones: upper(lower(x)) == model(x) for every architecture and alias; the paper's map sizes."""
import pytest
import torch

from kc.models import ALIASES, ARCHS, PAPER_ARCHS, SMALL_ARCHS, build, feature_shape, layer_names, node_names, split


def _input(arch, n=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=g) if arch in SMALL_ARCHS else torch.randn(n, 3, 224, 224, generator=g)


@pytest.mark.parametrize("arch", ARCHS)
def test_lower_upper_identity_for_every_alias(arch):
    torch.manual_seed(0)
    model = build(arch, 7).eval()
    x = _input(arch, n=1 if arch in PAPER_ARCHS else 3)
    with torch.no_grad():
        ref = model(x)
        assert ref.shape == (x.shape[0], 7)
        for alias in ALIASES[arch]:
            lower, upper = split(model, alias)
            assert torch.equal(upper(lower(x)), ref), alias


@pytest.mark.parametrize("arch", SMALL_ARCHS)
def test_identity_in_train_mode(arch):
    """Batch norm with batch statistics and dropout (same RNG state) also split exactly."""
    model = build(arch, 5).train()
    x = _input(arch, n=8)
    torch.manual_seed(1)
    ref = model(x)
    for alias in ALIASES[arch]:
        lower, upper = split(model, alias)
        torch.manual_seed(1)
        assert torch.equal(upper(lower(x)), ref), alias


@pytest.mark.parametrize("arch,layer,shape", [
    ("alexnet", "conv5", (256, 13, 13)), ("alexnet", "conv4", (256, 13, 13)),
    ("vgg16", "conv4_3", (512, 28, 28)), ("vgg16", "conv5_3", (512, 14, 14)), ("vgg16", "conv5_2", (512, 14, 14)),
    ("resnet34", "layer3", (256, 14, 14)), ("resnet18", "layer3", (256, 14, 14)), ("resnet50", "layer3", (1024, 14, 14)),
    ("alexnet_s", "conv5", (32, 7, 7)), ("vgg_s", "conv4_3", (32, 7, 7)), ("resnet_s", "layer4", (32, 7, 7))])
def test_paper_feature_shapes(arch, layer, shape):
    image = (1, 28, 28) if arch in SMALL_ARCHS else (3, 224, 224)
    assert feature_shape(build(arch, 10), layer, image) == shape


def test_graph_node_names_work_too():
    model = build("resnet18", 3).eval()
    x = _input("resnet18", 1)
    assert "layer3.1.relu_1" in node_names(model)
    for node in ("layer3.1", "layer3.1.relu_1", "layer2"):
        lower, upper = split(model, node)
        with torch.no_grad():
            assert torch.equal(upper(lower(x)), model(x)), node
    vgg = build("vgg16", 3)
    assert layer_names("vgg16")["conv4_3"] == "features.32"
    assert feature_shape(vgg, "features.32", (3, 224, 224)) == (512, 28, 28)


def test_split_shares_parameters_and_out_of_place_relu():
    model = build("vgg_s", 4).eval()
    lower, upper = split(model, "conv3_3")
    assert {id(p) for p in lower.parameters()} | {id(p) for p in upper.parameters()} <= {id(p) for p in model.parameters()}
    x = _input("vgg_s")
    with torch.no_grad():
        feat = lower(x)
        kept = feat.clone()
        upper(feat)
    assert torch.equal(feat, kept)          # the upper part never writes into the feature


def test_bad_names():
    with pytest.raises(ValueError, match="unknown architecture 'vgg19'.*valid: alexnet"):
        build("vgg19", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build("vgg_s", 0)
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*aliases: conv1, conv2"):
        split(build("alexnet_s", 10), "conv9")
    with pytest.raises(ValueError, match="skip connection crosses the cut"):
        split(build("resnet18", 10), "layer3.0.conv1")


def test_in_channels():
    assert build("vgg_s", 10, in_channels=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build("resnet18", 5, in_channels=1)(torch.zeros(1, 1, 64, 64)).shape == (1, 5)
