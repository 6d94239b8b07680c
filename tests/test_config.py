"""params validation: a bad value fails before any work with one line naming the key path."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kc.config import STUDIES, ConfigError, load, parse, read_params
from kc.stage import check

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", ["params.yaml", "configs/smoke.yaml", "configs/paper.yaml"])
def test_shipped_configs_are_valid(path):
    cfg = load(ROOT / path)
    assert cfg.nets and cfg.studies["stability"] and set(cfg.studies) == set(STUDIES)


def test_default_declares_the_papers_studies_in_its_regime(params):
    cfg = parse(params)
    assert set(cfg.studies["stability"]) == {"alexnet_s", "vgg_s", "resnet_s"}
    for name in cfg.studies["stability"]:
        pop = cfg.nets[name]
        assert len(pop.seeds) >= 3 and len(pop.halves) >= 2                          # Case 1, Case 2
        assert len(pop.seed_nets) * (len(pop.seed_nets) - 1) == 6                    # every ordered pair
    deep = [n for n in cfg.studies["stability"] if len(cfg.nets[n].layers) >= 2]
    assert len(deep) >= 2                        # Table 1's depth comparison (claim 2) on two architectures
    assert all(t.images_per_class and t.images_per_class <= 100 for t in cfg.tasks.values())  # small data
    assert len(cfg.classifier.seeds) >= 3
    assert len(cfg.studies["compression"]["vgg_s_conv4_3"]["thresholds"]) >= 4
    assert len(cfg.studies["born_again"]["vgg_s_conv4_3"]["seeds"]) == 4
    assert cfg.lam_for("alexnet_s", "resnet_s") == 8.0 and cfg.lam_for("vgg_s", "vgg_s") == cfg.lam


def test_population_names_its_nets(params):
    pop = parse(params).nets["vgg_s"]
    names = [n.name for n in pop.nets]
    assert names[:3] == ["vgg_s_seed0", "vgg_s_seed1", "vgg_s_seed2"]
    assert "vgg_s_split1_half1" in names and pop.net("vgg_s_split1_half1").half == (1, 1)
    assert pop.primary.name == "vgg_s_seed0"


def _bad(params, mutate):
    data = copy.deepcopy(params)
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.pop("lam"), r"^lam: missing"),
    (lambda d: d.update(lam=-0.5), r"^lam: must be a finite number >= 0, got -0.5"),
    (lambda d: d.update(K="two"), r"^K: must be an integer"),
    (lambda d: d.update(reading="mine"), r"^reading: must be a string \(one of paper, authors\)"),
    (lambda d: d["fit"].update(epochs=1.5), r"^fit.epochs: must be an integer"),
    (lambda d: d["fit"].update(norm="batch"), r"^fit.norm: unknown key; allowed here"),
    (lambda d: d["nets"].update({"Bad-Name": d["nets"]["vgg_s"]}), r"^nets.Bad-Name: names must match"),
    (lambda d: d["nets"].update({"ba\n": d["nets"]["vgg_s"]}), r"^nets.ba\n: names must match"),
    (lambda d: d["nets"].update({"x;touch /tmp/kc_pwned": d["nets"]["vgg_s"]}), r"names must match"),
    (lambda d: d["nets"].update({"../x": d["nets"]["vgg_s"]}), r"names must match"),
    (lambda d: d["nets"]["vgg_s"].update(arch="vgg19"), r"^nets.vgg_s.arch: must be a string \(one of alexnet"),
    (lambda d: d["nets"]["vgg_s"].update(halves=[[1, 2, 3]]), r"^nets.vgg_s.halves: must be a list of \[seed"),
    (lambda d: d["nets"]["vgg_s"]["layers"].append("conv9_9"), r"^nets.vgg_s.layers\[2\]: unknown layer 'conv9_9'"),
    (lambda d: d["nets"]["vgg_s"].update(seeds=[0, 0]), r"^nets.vgg_s.seeds: a value is listed twice"),
    (lambda d: d["nets"]["vgg_s"].update(task="nope"), r"^nets.vgg_s.task: unknown task 'nope'"),
    (lambda d: d["tasks"]["upper_vs_rest"]["groups"]["other"].append("shirt"), r"^tasks.upper_vs_rest.groups.other: class 'shirt' is in two groups"),
    (lambda d: d["refinement"]["subset"]["vgg_s_conv4_3"].update(classes=["jacket"]), r"^refinement.subset.vgg_s_conv4_3.classes\[0\]: unknown class 'jacket'"),
    (lambda d: d["refinement"]["components"]["vgg_s_conv3_3"].update(layer="conv2_2"), r"^refinement.components.vgg_s_conv3_3.layer: layer 'conv2_2' is not stored"),
    (lambda d: d["train"].update(lr="fast"), r"^train.lr: must be a finite number > 0"),
    (lambda d: d.update(extra=1), r"^extra: unknown key"),
    (lambda d: d.pop("compare"), r"^compare: missing \(dvc.yaml runs a stage per entry"),
    (lambda d: d["compression"]["vgg_s_conv4_3"].update(thresholds=[1.0, 0.5]), r"^compression.vgg_s_conv4_3.thresholds: must increase"),
    (lambda d: d["born_again"]["vgg_s_conv4_3"].update(nets="nobody"), r"^born_again.vgg_s_conv4_3.nets: unknown population of nets 'nobody'"),
    (lambda d: d["stability"].append("ghost"), r"^stability\[3\]: unknown population of nets 'ghost'"),
    (lambda d: d["readings"].append("vgg_s_binary"), r"^readings: nets.vgg_s_binary must also be in stability"),
    (lambda d: d["diagnosis"]["alexnet_s_vs_resnet_s"].update(strong="vgg_s_binary", strong_layer="conv4_3"),
     r"^diagnosis.alexnet_s_vs_resnet_s: nets.alexnet_s and nets.vgg_s_binary must be trained on the same task"),
    (lambda d: d["report"].update(channel=-5), r"^report.channel: must be an integer >= -1"),
    (lambda d: d["features"].update(dtype="int8"), r"^features.dtype: must be a string \(one of float16, float32\)"),
])
def test_bad_params_name_the_key(params, mutate, message):
    with pytest.raises(ConfigError, match=message):
        parse(_bad(params, mutate))


def test_files_that_are_not_params(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 0\nlam: 0.1\nlam: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 3: key 'lam' is given twice"):
        read_params(dup)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("seed: 0 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text"):
        read_params(latin)
    with pytest.raises(ConfigError, match=r"is a directory, not a params file"):
        read_params(tmp_path)
    with pytest.raises(ConfigError, match=r"no such params file"):
        read_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lam: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        read_params(bad)


def test_check_command_one_line(tmp_path, capsys):
    assert check(str(ROOT / "params.yaml")) == 0
    assert "22 nets" in capsys.readouterr().out
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in STUDIES:
        data[key] = [] if isinstance(data[key], list) else {}
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump(data))
    assert check(str(empty)) == 1                       # the report would have nothing to report
    assert "no study has an entry" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "kc", "check", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("kc: error: ") and out.stderr.count("\n") == 1
