"""params validation: a bad value fails before any work, naming the key path."""
import copy
from pathlib import Path

import pytest
import yaml

from kc.cli import check
from kc.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", ["params.yaml", "configs/smoke.yaml", "configs/paper.yaml"])
def test_shipped_configs_are_valid(path):
    cfg = load(ROOT / path)
    assert cfg.pairs and cfg.nets and cfg.studies["stability"]


def test_default_declares_the_papers_studies(params):
    cfg = parse(params)
    archs = {e["arch"] for e in cfg.studies["stability"].values()}
    assert archs == {"alexnet_s", "vgg_s", "resnet_s"}
    for arch in archs:
        entries = [e for e in cfg.studies["stability"].values() if e["arch"] == arch]
        assert len({e["layer"] for e in entries}) >= 2
        for e in entries:
            splits = {cfg.nets[cfg.pairs[p].source].split for p in e["case2"]}
            assert splits == {"half0", "half1"}
    fractions = [cfg.nets[cfg.pairs[p].source].threshold for p in cfg.studies["compression"]]
    assert len(fractions) >= 4
    assert len(cfg.studies["born_again"]) == 4
    assert cfg.pairs["diag_blind_spots"].lam == 8.0 and cfg.pairs["seeds_vgg_s_conv3_3_ab"].lam == cfg.lam


def _bad(params, mutate):
    data = copy.deepcopy(params)
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.pop("lam"), r"^lam: missing"),
    (lambda d: d.update(lam=-0.5), r"^lam: must be a number >= 0, got -0.5"),
    (lambda d: d["pairs"]["prune_050"].update(lam=-1), r"^pairs.prune_050.lam: must be a number >= 0"),
    (lambda d: d.update(K="two"), r"^K: must be an integer"),
    (lambda d: d["fit"].update(epochs=1.5), r"^fit.epochs: must be an integer"),
    (lambda d: d["pairs"]["prune_050"].update(source="vgg_s_seed9"), r"^pairs.prune_050.source: unknown net 'vgg_s_seed9'"),
    (lambda d: d["nets"].update({"Bad-Name": d["nets"]["vgg_s_seed0"]}), r"^nets.Bad-Name: names must match"),
    (lambda d: d["nets"]["vgg_s_seed0"].update(arch="vgg19"), r"^nets.vgg_s_seed0.arch: must be a string \(one of alexnet"),
    (lambda d: d["nets"]["vgg_s_seed0"].update(split="third"), r"^nets.vgg_s_seed0.split: .*full, half0, half1"),
    (lambda d: d["features"]["nets"]["vgg_s_seed0"].append("conv9_9"), r"^features.nets.vgg_s_seed0\[2\]: unknown layer 'conv9_9'"),
    (lambda d: d["pairs"]["prune_050"].update(layer="conv3_3"), r"^pairs.prune_050.layer: layer 'conv3_3' of net 'vgg_s_prune050' is not extracted"),
    (lambda d: d["tasks"]["upper_vs_rest"]["groups"]["other"].append("shirt"), r"^tasks.upper_vs_rest.groups.other: class 'shirt' is in two groups"),
    (lambda d: d["pairs"]["subset_vgg_s_conv4_3"].update(classes=["jacket"]), r"^pairs.subset_vgg_s_conv4_3.classes\[0\]: unknown class 'jacket'"),
    (lambda d: d["train"].update(lr="fast"), r"^train: lr must be"),
    (lambda d: d["fit"].update(norm="batch"), r"^fit.norm: must be a string \(one of dataset, instance\)"),
    (lambda d: d.update(extra=1), r"^extra: unknown key"),
    (lambda d: d["refine"]["components"]["vgg_s_conv3_3"].update(b="vgg_s_half1"), r"^refine.components.vgg_s_conv3_3: a and b must be the pair's"),
    (lambda d: d["studies"]["compression"].append("seeds_vgg_s_conv3_3_ab"), r"^studies.compression\[4\]: pair 'seeds_vgg_s_conv3_3_ab' must reconstruct a pruned"),
    (lambda d: d["distill"]["nets"]["vgg_s_gen1"].update(teacher="nobody"), r"^distill.nets.vgg_s_gen1.teacher: unknown net 'nobody'"),
    (lambda d: d["studies"]["stability"]["vgg_s_conv3_3"].update(paper="conv9 @ VGG"), r"^studies.stability.vgg_s_conv3_3.paper: unknown paper column"),
])
def test_bad_params_name_the_key(params, mutate, message):
    with pytest.raises(ConfigError, match=message):
        parse(_bad(params, mutate))


def test_check_command(tmp_path, capsys):
    assert check(str(ROOT / "params.yaml")) == 0
    assert "21 nets" in capsys.readouterr().out
    bad = tmp_path / "p.yaml"
    bad.write_text("lam: [\n")
    assert check(str(bad)) == 1
    assert "not valid YAML" in capsys.readouterr().err
